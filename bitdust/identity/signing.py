"""Signing and verifying identity documents: BitDust's legacy scheme and ours.

**Legacy (BitDust)** — a document whose ``<signature>`` has no ``scheme`` attribute. The signed
string is::

    s = "-" + "-".join(sources) + "-" + "-".join(contacts) + "-" + "-".join(scrubbers)
        + "-" + postage + "-" + date.replace(" ", "_") + "-" + version + "-" + revision

(``version`` is the element's text as written, e.g. ``sources`` in the reference files; ``revision``
its decimal text). The message is SHA-1(s), 20 raw bytes, signed with RSA PKCS#1 v1.5 over SHA-1 —
so the digest inside the signature is SHA-1(SHA-1(s)). The signature bytes are written as a
big-endian decimal integer. ``publickey`` and ``certificates`` are *not* covered, and the joined
string is ambiguous ("-" may appear inside fields): anyone can swap the public key of such a
document for their own and re-sign. Verifiers therefore accept it only when
``services/network/accept-legacy-identities`` is true, to let a network migrate BitDust's files.

**Ours** (``<signature scheme="rsa-pss-sha256-v1">``) — RSA-PSS with SHA-256, MGF1-SHA-256 and a
salt of 32 bytes (:func:`bitdust.rsakeys.sign_pss`, the one PSS every part uses) over
:func:`canonical_bytes`, which covers every field including the public key and the scheme name
itself::

    b"bitdust identity signature\\x00" + scheme + b"\\x00"
    then for each field of sources, contacts, certificates, scrubbers, postage, date, version,
    revision, publickey, in that order:
        field name (ASCII) + b"\\x00"
        lists:   u32 item count, then per item u32 length + UTF-8 bytes
        scalars: u32 length + UTF-8 bytes (revision as its decimal text)

(u32 = 4-byte big-endian unsigned). Length prefixes make the encoding injective; the leading label
separates these bytes from any other thing the same key signs (DHT records, handshakes). The
signature is written as a decimal integer like BitDust's, left-padded to the key size when decoded.
The attribute keeps BitDust's element order intact: a BitDust node still parses our document.

Nothing here reads files or the network; private keys are never logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bitdust import rsakeys
from bitdust.identity.document import ELEMENT_ORDER, SCHEME_LEGACY, SCHEME_PSS, Identity
from bitdust.identity.errors import IdentityError, SignatureError
from bitdust.identity.keys import public_key_to_openssh

ACCEPT_LEGACY_SETTING = "services/network/accept-legacy-identities"
LEGACY_REFUSED = f"legacy BitDust signature refused: set {ACCEPT_LEGACY_SETTING} true to accept"
DOMAIN_LABEL = b"bitdust identity signature\x00"

_CANONICAL_FIELDS = tuple(name for name in ELEMENT_ORDER if name != "signature")


def legacy_string(identity: Identity) -> str:
    """BitDust's signed string ``s`` (see the module docstring)."""
    parts = [
        "-".join(identity.sources),
        "-".join(identity.contacts),
        "-".join(identity.scrubbers),
        identity.postage,
        identity.date.replace(" ", "_"),
        identity.version,
        str(identity.revision),
    ]
    return "-" + "-".join(parts)


def legacy_message(identity: Identity) -> bytes:
    """SHA-1 of :func:`legacy_string`: the 20 bytes BitDust signs with PKCS#1 v1.5/SHA-1."""
    return hashlib.sha1(legacy_string(identity).encode("utf-8")).digest()


def canonical_bytes(identity: Identity, scheme: str = SCHEME_PSS) -> bytes:
    """The bytes our scheme signs: every field but the signature, key included, domain-separated."""
    out = bytearray(DOMAIN_LABEL)
    out += scheme.encode("ascii") + b"\x00"
    for name in _CANONICAL_FIELDS:
        out += name.encode("ascii") + b"\x00"
        value = getattr(identity, name)
        if isinstance(value, tuple):
            out += struct.pack(">I", len(value))
            for item in value:
                _put(out, item)
        else:
            _put(out, str(value))
    return bytes(out)


def sign(identity: Identity, private_key: rsa.RSAPrivateKey, scheme: str = SCHEME_PSS) -> Identity:
    """Return ``identity`` signed with ``private_key``: its ``publickey`` set to that key's,
    ``scheme`` and ``signature`` filled in. Legacy signing exists for interoperability tests and
    for networks that still run BitDust nodes; use :data:`SCHEME_PSS` otherwise.
    """
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise SignatureError("an identity can only be signed with an RSA private key")
    unsigned = dataclasses.replace(
        identity, publickey=public_key_to_openssh(private_key), scheme=scheme, signature=""
    )
    if scheme == SCHEME_PSS:
        raw = rsakeys.sign_pss(private_key, canonical_bytes(unsigned, scheme))
    elif scheme == SCHEME_LEGACY:
        raw = private_key.sign(legacy_message(unsigned), padding.PKCS1v15(), hashes.SHA1())
    else:
        raise SignatureError(f"unknown signature scheme {scheme!r}")
    return dataclasses.replace(unsigned, signature=str(int.from_bytes(raw, "big")))


def verify(identity: Identity, accept_legacy: bool) -> None:
    """Check the signature of ``identity`` against its own ``publickey``.

    Returns ``None`` when it holds; raises :class:`SignatureError` with the reason otherwise,
    including when the document carries BitDust's legacy signature and ``accept_legacy`` is false.
    """
    if not identity.signature:
        raise SignatureError("the identity is not signed")
    if identity.scheme == SCHEME_LEGACY and not accept_legacy:
        raise SignatureError(LEGACY_REFUSED)
    try:
        public_key = identity.public_key
    except IdentityError as exc:
        raise SignatureError(f"cannot verify the signature: {exc.message}") from None
    size = (public_key.key_size + 7) // 8
    value = int(identity.signature)
    if value.bit_length() > size * 8:
        raise SignatureError("the signature does not match the identity's public key")
    raw = value.to_bytes(size, "big")
    if identity.scheme == SCHEME_PSS:
        valid = rsakeys.verify_pss(public_key, canonical_bytes(identity, SCHEME_PSS), raw)
    else:  # SCHEME_LEGACY; Identity refuses unknown schemes
        try:
            public_key.verify(raw, legacy_message(identity), padding.PKCS1v15(), hashes.SHA1())
            valid = True
        except InvalidSignature:
            valid = False
    if not valid:
        raise SignatureError(
            f"the signature ({_scheme_name(identity.scheme)}) does not match the identity's "
            "content and public key"
        )


def _put(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    out += struct.pack(">I", len(data))
    out += data


def _scheme_name(scheme: str) -> str:
    return "BitDust legacy" if scheme == SCHEME_LEGACY else scheme
