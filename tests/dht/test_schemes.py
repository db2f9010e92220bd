"""Signature schemes are given to a node when it is built; RSA follows bitdust.rsakeys' rules."""

from __future__ import annotations

import dataclasses
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.dht.records import RecordChecker, dht_key, sign_record
from bitdust.dht.refusals import Refusal
from bitdust.dht.schemes import (
    ED25519,
    RSA_PSS,
    STANDARD_VERIFIERS,
    Ed25519Signer,
    RsaSigner,
    verify_ed25519,
    verify_rsa_pss,
)
from bitdust.keysize import KeyRefused

NOW = 1_800_000_000
OWNER = "http://host-a.com:8084/alice.xml"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def checker(verifiers) -> RecordChecker:  # type: ignore[no-untyped-def]
    return RecordChecker(verifiers, max_age=86400, clock_skew=300)


def test_identity_key_signs_records_that_the_standard_schemes_accept(rsa_key) -> None:  # type: ignore[no-untyped-def]
    signer = RsaSigner(rsa_key)
    record = sign_record(signer, dht_key("alice"), b"value", NOW, 3600, OWNER)
    assert record.scheme == RSA_PSS
    assert checker(STANDARD_VERIFIERS).check(record, NOW + 100) is None
    tampered = dataclasses.replace(record, value=b"other")
    assert checker(STANDARD_VERIFIERS).check(tampered, NOW + 100) is Refusal.INVALID_SIGNATURE
    assert "PRIVATE" not in repr(signer) and repr(signer).startswith("RsaSigner(public key")


def test_a_node_accepts_only_the_schemes_it_was_built_with(rsa_key) -> None:  # type: ignore[no-untyped-def]
    """Two checkers in one process: what one accepts never depends on the other."""
    record = sign_record(RsaSigner(rsa_key), dht_key("alice"), b"value", NOW, 3600)
    ed_only = checker({ED25519: verify_ed25519})
    assert ed_only.check(record, NOW) is Refusal.INVALID_SIGNATURE
    assert checker(STANDARD_VERIFIERS).check(record, NOW) is None
    assert ed_only.check(record, NOW) is Refusal.INVALID_SIGNATURE


def test_a_test_scheme_is_given_to_one_checker_not_registered_for_all() -> None:
    class HmacSigner:
        scheme = "test-hmac"
        public_key = b"shared-secret-for-tests"

        def sign(self, data: bytes) -> bytes:
            return hmac.digest(self.public_key, data, "sha256")

    def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(hmac.digest(public_key, data, "sha256"), signature)

    record = sign_record(HmacSigner(), dht_key("k"), b"v", NOW, 60)
    assert checker({"test-hmac": verify}).check(record, NOW) is None
    assert checker(STANDARD_VERIFIERS).check(record, NOW) is Refusal.INVALID_SIGNATURE


def test_a_verifier_that_raises_reads_as_invalid() -> None:
    def broken(public_key: bytes, data: bytes, signature: bytes) -> bool:
        raise RuntimeError("bug")

    record = sign_record(Ed25519Signer.generate(), dht_key("k"), b"v", NOW, 60)
    assert checker({ED25519: broken}).check(record, NOW) is Refusal.INVALID_SIGNATURE


def test_rsa_keys_with_another_exponent_are_refused_before_any_arithmetic() -> None:
    """A valid signature by an e=3 key is still refused: only 65537 is accepted (rsakeys)."""
    odd = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(KeyRefused, match="exponent"):
        RsaSigner(odd)
    from bitdust import rsakeys

    der, data = rsakeys.public_key_der(odd), b"data"
    assert rsakeys.verify_pss(odd.public_key(), data, rsakeys.sign_pss(odd, data))
    assert not verify_rsa_pss(der, data, rsakeys.sign_pss(odd, data))


def test_rsa_verifier_refuses_junk_and_other_keys(rsa_key) -> None:  # type: ignore[no-untyped-def]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    record = sign_record(RsaSigner(rsa_key), dht_key("alice"), b"value", NOW, 3600)
    data = record.signed_bytes()
    assert verify_rsa_pss(record.public_key, data, record.signature)
    assert not verify_rsa_pss(RsaSigner(other).public_key, data, record.signature)
    assert not verify_rsa_pss(b"junk", b"data", b"sig")
