"""Issue 10.2: a record's owner IDURL is shown only when that identity's key signed it."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust import rsakeys
from bitdust.dht.owners import Found, OwnerKeys, OwnerUnknown
from bitdust.dht.records import dht_key, sign_record
from bitdust.dht.schemes import RsaSigner

ALICE = "http://host-a.com:8084/alice.xml"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))  # type: ignore[return-value]


async def test_a_record_claiming_alice_is_shown_without_owner_unless_alice_signed_it(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    alice, mallory = keys
    fetched: list[str] = []

    async def fetch(idurl: str) -> bytes:
        fetched.append(idurl)
        await asyncio.sleep(0.01)
        if idurl != ALICE:
            raise OwnerUnknown(f"{idurl}: no such identity")
        return rsakeys.public_key_der(alice)

    owners = OwnerKeys(fetch)
    spoofed = sign_record(RsaSigner(mallory), dht_key("alice:status"), b"pwned", NOW, 60, ALICE)
    genuine = sign_record(RsaSigner(alice), dht_key("alice:status"), b"online", NOW, 60, ALICE)
    unknown = sign_record(RsaSigner(mallory), dht_key("x"), b"v", NOW, 60, "http://b.com/m.xml")
    found = await asyncio.gather(*(owners.verified(r) for r in (spoofed, genuine, unknown)))
    assert found == [Found(spoofed, None), Found(genuine, ALICE), Found(unknown, None)]
    assert sorted(fetched) == sorted({ALICE, "http://b.com/m.xml"})  # one fetch per IDURL
    await owners.verified(genuine)
    assert len(fetched) == 2  # cached


async def test_cached_keys_expire_and_failures_are_retried_after_a_while() -> None:
    now = [0.0]
    calls: list[str] = []

    async def fetch(idurl: str) -> bytes:
        calls.append(idurl)
        raise OwnerUnknown("unreachable")

    owners = OwnerKeys(fetch, ttl=600.0, failure_ttl=30.0, clock=lambda: now[0])
    assert await owners.public_key(ALICE) is None
    assert await owners.public_key(ALICE) is None and len(calls) == 1
    now[0] = 31.0
    assert await owners.public_key(ALICE) is None and len(calls) == 2
