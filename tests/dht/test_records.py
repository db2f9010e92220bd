"""Signed records and the storage policy: forgeries are refused, limits hold, newer wins."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from bitdust.dht.persistence import MemoryPersistence
from bitdust.dht.records import Record, RecordChecker, dht_key, sign_record
from bitdust.dht.refusals import Refusal
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.store import RecordStore

NOW = 1_750_000_000
KEY = dht_key("customer:alice@host-a.com")
ALICE = Ed25519Signer.generate()
BOB = Ed25519Signer.generate()


def record(signer=ALICE, key=KEY, value=b"v", created=NOW, age=3600, owner=None) -> Record:  # type: ignore[no-untyped-def]
    return sign_record(signer, key, value, created, age, owner)


CHECKER = RecordChecker(STANDARD_VERIFIERS, max_age=86400, clock_skew=300)


def check(r: Record, now: float = NOW) -> Refusal | None:
    return CHECKER.check(r, now)


def verify_signature(r: Record) -> bool:
    return CHECKER.verify_signature(r)


def test_dht_key_is_sha1_of_the_utf8_name() -> None:
    assert dht_key("héllo") == hashlib.sha1("héllo".encode()).digest()
    assert len(KEY) == 20


def test_a_signed_record_verifies() -> None:
    r = record(owner="http://host-a.com:8084/alice.xml")
    assert verify_signature(r)
    assert check(r) is None


@pytest.mark.parametrize(
    "change",
    [
        {"value": b"forged"},
        {"key": dht_key("somebody else")},
        {"expires": NOW + 7200},
        {"created": NOW - 1},
        {"owner": "http://evil.com/alice.xml"},
        {"public_key": BOB.public_key},
        {"scheme": "nonexistent"},
    ],
)
def test_changing_any_signed_field_breaks_the_signature(change: dict[str, object]) -> None:
    forged = dataclasses.replace(record(), **change)
    assert not verify_signature(forged)
    assert check(forged) is Refusal.INVALID_SIGNATURE


def test_a_signature_from_another_domain_does_not_verify() -> None:
    r = record()
    raw = r.signed_bytes()[len(b"bitdust-dht-record-v1\x00") :]
    assert not verify_signature(dataclasses.replace(r, signature=ALICE.sign(raw)))


def test_times_are_checked() -> None:
    assert check(record(created=NOW - 3600, age=3600)) is Refusal.EXPIRED
    assert check(record(created=NOW + 3600)) is Refusal.CREATED_IN_FUTURE
    assert check(record(created=NOW + 100)) is None  # within the allowed clock skew
    assert check(record(age=86401)) is Refusal.LIFETIME_TOO_LONG


# Storage policy -------------------------------------------------------------------------------


def make_store(**limits: int) -> RecordStore:
    return RecordStore(DHTSettings(**limits), MemoryPersistence(), bytes(20))


def test_newer_record_from_the_same_signer_replaces_the_older() -> None:
    store = make_store()
    assert store.put(record(value=b"old", created=NOW), "1.1.1.1", 0) is None
    assert store.put(record(value=b"new", created=NOW + 5), "1.1.1.1", 0) is None
    assert [r.value for r in store.get(KEY, NOW)] == [b"new"]
    assert len(store) == 1


def test_older_or_conflicting_record_is_refused() -> None:
    store = make_store()
    store.put(record(value=b"new", created=NOW + 5), "1.1.1.1", 0)
    assert store.put(record(value=b"old", created=NOW), "1.1.1.1", 0) is Refusal.OLDER
    assert store.put(record(value=b"other", created=NOW + 5), "1.1.1.1", 0) is Refusal.CONFLICT
    assert [r.value for r in store.get(KEY, NOW)] == [b"new"]


def test_several_signers_each_hold_a_value_under_one_key() -> None:
    store = make_store()
    store.put(record(ALICE, value=b"a"), "1.1.1.1", 0)
    store.put(record(BOB, value=b"b", created=NOW + 1), "2.2.2.2", 0)
    assert [r.value for r in store.get(KEY, NOW)] == [b"b", b"a"]


def test_records_per_key_are_bounded() -> None:
    store = make_store(max_records_per_key=3)
    signers = [Ed25519Signer.generate() for _ in range(4)]
    results = [store.put(record(s), f"10.0.{i}.1", 0) for i, s in enumerate(signers)]
    assert results[:3] == [None, None, None]
    assert results[3] is Refusal.KEY_FULL


def test_records_per_signer_and_per_network_are_bounded() -> None:
    store = make_store(max_records_per_signer=2, max_records_per_network=3)
    assert store.put(record(key=dht_key("a")), "1.1.1.1", 0) is None
    assert store.put(record(key=dht_key("b")), "1.1.1.1", 0) is None
    assert store.put(record(key=dht_key("c")), "1.1.1.1", 0) is Refusal.SIGNER_RECORDS
    assert store.put(record(BOB, key=dht_key("c")), "1.1.1.1", 0) is None
    refused = store.put(record(BOB, key=dht_key("d")), "1.1.1.1", 0)
    assert refused is Refusal.NETWORK_RECORDS
    assert store.put(record(BOB, key=dht_key("d")), "9.9.9.9", 0) is None


def test_total_bytes_are_bounded_and_freed_by_expiry() -> None:
    store = make_store(max_bytes=3000)
    assert store.put(record(key=dht_key("a"), value=b"x" * 1000, age=60), "1.1.1.1", 0) is None
    assert store.put(record(key=dht_key("b"), value=b"x" * 1000, age=600), "1.1.1.1", 0) is None
    big = record(key=dht_key("c"), value=b"x" * 1000, age=600)
    assert store.put(big, "1.1.1.1", 0) is Refusal.STORE_FULL
    assert store.expire(NOW + 61) == 1
    assert store.put(big, "1.1.1.1", 0) is None
    assert store.total_bytes == 2 * big.size


def test_expired_records_are_not_returned() -> None:
    store = make_store()
    store.put(record(age=60), "1.1.1.1", 0)
    assert store.get(KEY, NOW + 59)
    assert store.get(KEY, NOW + 60) == []
