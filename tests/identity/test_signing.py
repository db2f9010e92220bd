"""Signatures: BitDust's legacy scheme on real BitDust files, ours with pinned vectors."""

from __future__ import annotations

import hashlib
import struct

import pytest

from bitdust.identity.document import SCHEME_LEGACY, SCHEME_PSS, parse_identity
from bitdust.identity.errors import SignatureError
from bitdust.identity.keys import public_key_to_openssh
from bitdust.identity.signing import canonical_bytes, legacy_string, sign, verify
from tests.identity.conftest import VECTORS, make_identity, reference_file

REFERENCE_FILES = ["alice.xml", "sup1.xml"]


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_bitdust_reference_file_verifies_when_legacy_is_accepted(name):
    identity = parse_identity(reference_file(name))
    assert identity.scheme == SCHEME_LEGACY
    verify(identity, accept_legacy=True)


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_bitdust_reference_file_is_refused_when_legacy_is_off(name):
    identity = parse_identity(reference_file(name))
    with pytest.raises(SignatureError) as refused:
        verify(identity, accept_legacy=False)
    assert str(refused.value) == (
        "legacy BitDust signature refused: set services/network/accept-legacy-identities true "
        "to accept"
    )


def test_legacy_string_of_reference_file_includes_version_text():
    identity = parse_identity(reference_file("alice.xml"))
    assert legacy_string(identity) == (
        "-http://127.0.0.1:8084/alice.xml-tcp://127.0.0.1:17774--1-Nov_25,_2026-sources-1"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"tcp://127.0.0.1:17774", b"tcp://127.0.0.1:17775"),
        (b"<revision>1<", b"<revision>2<"),
        (b"<date>Nov 25, 2026<", b"<date>Nov 26, 2026<"),
        (b"<version>sources<", b"<version>source<"),
    ],
)
def test_tampered_reference_file_fails(old, new):
    data = reference_file("alice.xml")
    assert old in data
    identity = parse_identity(data.replace(old, new))
    with pytest.raises(SignatureError, match="does not match"):
        verify(identity, accept_legacy=True)


def test_tampered_signature_digit_fails():
    data = reference_file("sup1.xml")
    identity = parse_identity(data)
    digits = identity.signature
    changed = digits[:-1] + ("1" if digits[-1] != "1" else "2")
    with pytest.raises(SignatureError, match=r"BitDust legacy.*does not match"):
        verify(identity.replace(signature=changed), accept_legacy=True)


def test_legacy_scheme_does_not_cover_the_public_key(key):
    # Why legacy is off by default: BitDust's signature survives a swapped public key's re-signing.
    identity = parse_identity(reference_file("alice.xml"))
    forged = sign(identity, key, SCHEME_LEGACY)
    verify(forged, accept_legacy=True)
    assert forged.publickey != identity.publickey


def test_sign_verify_round_trip(key):
    identity = make_identity(key)
    verify(identity, accept_legacy=False)
    reparsed = parse_identity(identity.to_xml())
    assert reparsed == identity
    verify(reparsed, accept_legacy=False)


def test_legacy_sign_verify_round_trip(key):
    identity = make_identity(key, scheme=SCHEME_LEGACY)
    assert b"scheme=" not in identity.to_xml()
    verify(parse_identity(identity.to_xml()), accept_legacy=True)


@pytest.mark.parametrize(
    "change",
    [
        {"contacts": ("tcp://127.0.1.9:7771",)},
        {"revision": 2},
        {"certificates": ("cert",)},
        {"version": "other"},
        {"sources": ("http://host-b.com/alice.xml",)},
    ],
)
def test_our_signature_covers_every_field(key, change):
    identity = make_identity(key).replace(**change)
    with pytest.raises(SignatureError, match="does not match"):
        verify(identity, accept_legacy=False)


def test_our_signature_covers_the_public_key(key, other_key):
    identity = make_identity(key).replace(publickey=public_key_to_openssh(other_key))
    with pytest.raises(SignatureError, match="does not match the identity's content and public"):
        verify(identity, accept_legacy=True)


def test_unsigned_identity_is_refused(key):
    with pytest.raises(SignatureError, match="not signed"):
        verify(make_identity(key).unsigned(), accept_legacy=True)


def test_signature_of_wrong_scheme_label_fails(key):
    # A PSS signature relabelled as legacy must not verify (and vice versa).
    identity = make_identity(key)
    with pytest.raises(SignatureError, match=r"BitDust legacy.*does not match"):
        verify(identity.replace(scheme=SCHEME_LEGACY), accept_legacy=True)


# -- pinned vectors of our scheme -----------------------------------------------------------------


def _vector_identity(publickey: str):
    from tests.identity.vectors.make_vectors import vector_identity

    return vector_identity(publickey)


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


def test_canonical_bytes_are_pinned(key):
    publickey = public_key_to_openssh(key)
    expected = (
        b"bitdust identity signature\x00rsa-pss-sha256-v1\x00"
        b"sources\x00" + _u32(2)
        + _u32(27) + b"http://host-a.com/alice.xml"
        + _u32(32) + b"http://host-b.com:8084/alice.xml"
        + b"contacts\x00" + _u32(1) + _u32(20) + b"tcp://127.0.1.1:7771"
        + b"certificates\x00" + _u32(0)
        + b"scrubbers\x00" + _u32(0)
        + b"postage\x00" + _u32(1) + b"1"
        + b"date\x00" + _u32(12) + b"Nov 25, 2026"
        + b"version\x00" + _u32(16) + b"bitdust-py 0.1.0"
        + b"revision\x00" + _u32(1) + b"3"
        + b"publickey\x00" + _u32(len(publickey)) + publickey.encode()
    )  # fmt: skip
    actual = canonical_bytes(_vector_identity(publickey))
    assert actual == expected
    assert hashlib.sha256(actual).hexdigest() == (
        "ab1a27dc9006ee1eaa2d31b05af5888496db0ee3df6b1cd2f895dede8dec6889"
    )


def test_stored_signature_vector_verifies(key):
    data = (VECTORS / "signed_pss.xml").read_bytes()
    identity = parse_identity(data)
    assert identity.scheme == SCHEME_PSS
    assert identity.publickey == public_key_to_openssh(key)
    assert identity == _vector_identity(identity.publickey).replace(signature=identity.signature)
    verify(identity, accept_legacy=False)
    assert identity.to_xml() == data
