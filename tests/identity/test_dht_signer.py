"""The identity key signs DHT records that DHT nodes accept once the scheme is registered."""

from __future__ import annotations

from bitdust.dht import records
from bitdust.identity.dht_signer import SCHEME, RsaDhtSigner, register, verify_rsa_record


def test_rsa_signed_record_verifies_after_register(key, other_key):
    register()
    signer = RsaDhtSigner(key)
    record = records.sign_record(
        signer,
        records.dht_key("alice"),
        b"value",
        1_800_000_000,
        3600,
        "http://host-a.com/alice.xml",
    )
    assert record.scheme == SCHEME
    assert records.check_record(record, 1_800_000_100, 86400, 60) is None
    tampered = records.sign_record(signer, records.dht_key("alice"), b"other", 1_800_000_000, 3600)
    assert not verify_rsa_record(record.public_key, record.signed_bytes(), tampered.signature)
    assert not verify_rsa_record(
        RsaDhtSigner(other_key).public_key, record.signed_bytes(), record.signature
    )
    assert not verify_rsa_record(b"junk", b"data", b"sig")
    assert "PRIVATE" not in repr(signer) and repr(signer).startswith("RsaDhtSigner(SHA256:")
