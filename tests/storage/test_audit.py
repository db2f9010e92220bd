"""Audits: challenges made from a fragment's bytes, and the auditor against in-memory suppliers
that hold real fragment bytes (honest, corrupt, gone, unreachable); the real protocol between
processes is tested with the customer service."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitdust.p2p.errors import PeerUnreachable, RequestRefused
from bitdust.storage.audit import MAX_RANGE, Auditor, make_challenges
from bitdust.storage.catalogue import BAD, STORED, Catalogue, Challenge

SUPPLIERS = ["http://host-a.com/s0.xml", "http://host-b.com/s1.xml", "http://host-c.com/s2.xml"]
FRAGMENT_SIZE = 3000
NOW = 1_700_000_000.0


def answer(fragment: bytes, challenge: Challenge) -> bytes:
    span = fragment[challenge.offset : challenge.offset + challenge.length]
    return hashlib.sha256(challenge.nonce + span).digest()


class WholeFragment:
    """Randomness whose challenges each cover the whole fragment (up to MAX_RANGE), so that
    one flipped byte anywhere fails every challenge."""

    token_bytes = staticmethod(secrets.token_bytes)

    def randbelow(self, exclusive_upper_bound: int) -> int:
        return exclusive_upper_bound - 1


class MemorySuppliers:
    """Suppliers as byte stores, answering as a supplier does; ``away`` ones never answer."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, bytes], bytes] = {}
        self.away: dict[str, Exception] = {}
        self.nonces: list[bytes] = []
        self.fetched: list[tuple[str, bytes]] = []
        self.barrier: asyncio.Barrier | None = None

    async def audit(self, idurl: str, fragment_id: bytes, challenge: Challenge) -> bytes:
        self.nonces.append(challenge.nonce)
        if self.barrier is not None:
            await self.barrier.wait()
        return answer(self._fragment(idurl, fragment_id), challenge)

    async def get(self, idurl: str, fragment_id: bytes, size: int) -> bytes:
        self.fetched.append((idurl, fragment_id))
        return self._fragment(idurl, fragment_id)

    def _fragment(self, idurl: str, fragment_id: bytes) -> bytes:
        if idurl in self.away:
            raise self.away[idurl]
        if (idurl, fragment_id) not in self.held:
            raise RequestRefused("no such fragment")
        return self.held[(idurl, fragment_id)]

    def flip_byte(self, idurl: str, fragment_id: bytes, at: int = 1234) -> None:
        data = bytearray(self.held[(idurl, fragment_id)])
        data[at] ^= 0x01
        self.held[(idurl, fragment_id)] = bytes(data)


def chunk_id(name: str) -> bytes:
    return hashlib.sha256(b"chunk " + name.encode()).digest()


def fragment_id(name: str, index: int) -> bytes:
    return hashlib.sha256(f"fragment {name} {index}".encode()).digest()


def upload(
    catalogue: Catalogue, suppliers: MemorySuppliers, name: str, challenges: int = 2
) -> bytes:
    """Store a 2-of-3 chunk as the customer does: fragment bytes to each supplier, then the
    placements with their digests and challenges made while the bytes are at hand."""
    fragments = [os.urandom(FRAGMENT_SIZE) for _ in SUPPLIERS]
    for index, fragment in enumerate(fragments):
        suppliers.held[(SUPPLIERS[index], fragment_id(name, index))] = fragment
    catalogue.add_chunk(
        chunk_id(name),
        2 * FRAGMENT_SIZE - 100,
        FRAGMENT_SIZE,
        2,
        3,
        [(index, idurl, fragment_id(name, index)) for index, idurl in enumerate(SUPPLIERS)],
        digests=[hashlib.sha256(fragment).digest() for fragment in fragments],
        challenges={
            index: make_challenges(fragment, challenges, WholeFragment())
            for index, fragment in enumerate(fragments)
        },
    )
    return chunk_id(name)


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    opened = Catalogue(tmp_path / "catalogue.sqlite3")
    opened.set_suppliers(SUPPLIERS, 10**9)
    yield opened
    opened.close()


@pytest.fixture
def suppliers() -> MemorySuppliers:
    return MemorySuppliers()


def states(catalogue: Catalogue, index: int, names: list[str]) -> dict[str, str]:
    return {name: catalogue.placements(chunk_id(name))[index].state for name in names}


def test_a_challenge_is_answered_only_by_the_bytes_it_was_made_from() -> None:
    fragment = os.urandom(200_000)
    challenges = make_challenges(fragment, 50)

    assert len({c.nonce for c in challenges}) == 50
    for c in challenges:
        assert len(c.nonce) == 16
        assert 1 <= c.length <= MAX_RANGE and c.offset + c.length <= len(fragment)
        assert c.digest == answer(fragment, c)
        flipped = bytearray(fragment)
        flipped[c.offset + c.length // 2] ^= 0x80
        assert answer(bytes(flipped), c) != c.digest
    assert len({c.offset for c in challenges}) > 1, "ranges fall at random"
    assert make_challenges(b"x", 2)[0].length == 1
    assert make_challenges(fragment, 0) == []
    with pytest.raises(ValueError, match="empty fragment"):
        make_challenges(b"", 1)


async def test_an_honest_supplier_passes_and_is_verified(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    names = ["a", "b", "c"]
    for name in names:
        upload(catalogue, suppliers, name)
    auditor = Auditor(catalogue, suppliers, sample=2)

    results = await auditor.audit_all(NOW)

    assert [
        (r.position, r.supplier, r.checked, r.failed, r.reachable, r.error) for r in results
    ] == [(position, idurl, 2, [], True, "") for position, idurl in enumerate(SUPPLIERS)]
    for row in catalogue.suppliers():
        assert (row.last_seen, row.away_since, row.last_audit, row.audit_failures) == (
            NOW,
            None,
            NOW,
            0,
        )
    verified = [p.verified_at for name in names for p in catalogue.placements(chunk_id(name))]
    assert sorted(verified, key=lambda at: at or 0) == [None] * 3 + [NOW] * 6
    assert len(suppliers.nonces) == 6 and suppliers.fetched == []


async def test_a_flipped_byte_fails_exactly_the_placements_it_touches(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    names = ["a", "b", "c", "d"]
    for name in names:
        upload(catalogue, suppliers, name)
    for name in ("b", "d"):
        suppliers.flip_byte(SUPPLIERS[1], fragment_id(name, 1))
    auditor = Auditor(catalogue, suppliers, sample=len(names))

    results = await auditor.audit_all(NOW)

    assert [(r.checked, len(r.failed)) for r in results] == [(4, 0), (4, 2), (4, 0)]
    assert sorted(results[1].failed) == sorted([(chunk_id("b"), 1), (chunk_id("d"), 1)])
    assert states(catalogue, 1, names) == {"a": STORED, "b": BAD, "c": STORED, "d": BAD}
    assert all(state == STORED for state in states(catalogue, 0, names).values())
    assert [h.audit_failures for h in catalogue.supplier_health()] == [0, 1, 0]

    second = await auditor.audit_supplier(1, NOW + 60)
    assert (second.checked, second.failed) == (2, []), "bad placements are not sampled again"
    assert catalogue.supplier_health()[1].audit_failures == 0


async def test_a_lost_fragment_fails_and_a_sample_is_part_of_the_placements(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    names = [f"chunk-{number}" for number in range(6)]
    for name in names:
        upload(catalogue, suppliers, name)
    for name in names:
        del suppliers.held[(SUPPLIERS[2], fragment_id(name, 2))]

    result = await Auditor(catalogue, suppliers, sample=2).audit_supplier(2, NOW)

    assert result.checked == 2 and result.reachable
    failed = {chunk for chunk, _ in result.failed}
    assert len(failed) == 2
    bad = {chunk_id(name) for name, state in states(catalogue, 2, names).items() if state == BAD}
    assert bad == failed, "exactly the challenged placements are marked bad"
    assert catalogue.supplier_health()[2].audit_failures == 1


@pytest.mark.parametrize("error", [PeerUnreachable("no contact answered"), TimeoutError()])
async def test_an_unreachable_supplier_is_away_not_failing(
    catalogue: Catalogue, suppliers: MemorySuppliers, error: Exception
) -> None:
    names = ["a", "b"]
    for name in names:
        upload(catalogue, suppliers, name)
    suppliers.away[SUPPLIERS[0]] = error
    auditor = Auditor(catalogue, suppliers, sample=2)

    first = await auditor.audit_supplier(0, NOW)
    later = await auditor.audit_supplier(0, NOW + 600)

    for result in (first, later):
        assert (result.reachable, result.checked, result.failed) == (False, 0, [])
        assert type(error).__name__ in result.error
    row = catalogue.suppliers()[0]
    assert (row.away_since, row.last_seen, row.audit_failures, row.last_audit) == (
        NOW,
        None,
        0,
        None,
    )
    assert all(state == STORED for state in states(catalogue, 0, names).values())

    del suppliers.away[SUPPLIERS[0]]
    back = await auditor.audit_supplier(0, NOW + 1200)
    assert back.reachable and back.failed == [] and back.checked == 2
    assert catalogue.supplier_health()[0].away_since is None


async def test_out_of_challenges_a_full_fetch_checks_and_refreshes_them(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    good, corrupt = upload(catalogue, suppliers, "good", 1), upload(catalogue, suppliers, "bad", 1)
    auditor = Auditor(catalogue, suppliers, sample=2, challenges_per_fragment=3)

    assert (await auditor.audit_supplier(0, NOW)).failed == []  # the one challenge each
    assert suppliers.fetched == []
    suppliers.flip_byte(SUPPLIERS[0], fragment_id("bad", 0))
    fetched = await auditor.audit_supplier(0, NOW + 1)

    assert fetched.failed == [(corrupt, 0)], "the fetched bytes did not match the digest"
    assert sorted(suppliers.fetched) == sorted(
        [(SUPPLIERS[0], fragment_id("good", 0)), (SUPPLIERS[0], fragment_id("bad", 0))]
    )
    assert catalogue.take_challenge(corrupt, 0) is None, "no challenges from corrupt bytes"
    fresh = [catalogue.take_challenge(good, 0) for _ in range(4)]
    assert fresh[3] is None and None not in fresh[:3]
    fragment = suppliers.held[(SUPPLIERS[0], fragment_id("good", 0))]
    assert all(challenge.digest == answer(fragment, challenge) for challenge in fresh[:3])


async def test_no_challenge_is_ever_asked_twice(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    for name in ("a", "b", "c"):
        upload(catalogue, suppliers, name, 2)
    auditor = Auditor(catalogue, suppliers, sample=3, challenges_per_fragment=2)

    for round_ in range(5):
        results = await auditor.audit_all(NOW + round_)
        assert all(result.failed == [] and result.checked == 3 for result in results)

    assert len(suppliers.nonces) == len(set(suppliers.nonces)) > 0
    assert suppliers.fetched, "challenges ran out and were refreshed from fetched bytes"


async def test_a_placement_without_digest_or_challenge_is_not_asked(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    catalogue.add_chunk(chunk_id("old"), 10, 10, 1, 1, [(0, SUPPLIERS[0], fragment_id("o", 0))])

    result = await Auditor(catalogue, suppliers, sample=5).audit_supplier(0, NOW)

    assert (result.checked, result.failed, result.reachable) == (0, [], True)
    assert suppliers.nonces == [] and suppliers.fetched == []
    assert catalogue.suppliers()[0].last_audit is None


async def test_suppliers_are_audited_at_once(
    catalogue: Catalogue, suppliers: MemorySuppliers
) -> None:
    upload(catalogue, suppliers, "a")
    suppliers.barrier = asyncio.Barrier(len(SUPPLIERS))  # each waits until all are asked

    async with asyncio.timeout(5):
        results = await Auditor(catalogue, suppliers, sample=1).audit_all(NOW)

    assert [result.checked for result in results] == [1, 1, 1]
