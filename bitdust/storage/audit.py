"""Audits: the customer checks that each supplier still holds what it was given (issue 13).

A supplier proves it holds a fragment by answering SHA-256(nonce || a range of it) for a nonce it
has never seen (``storage/audit`` in :mod:`bitdust.storage.wire`). The customer keeps no
fragments, so it makes these challenges while it still holds the bytes, at upload or rebuild
(:func:`make_challenges`), and the catalogue stores them with the placement; each is taken once
and deleted, so an answer can be neither precomputed nor replayed. A placement out of challenges
is fetched whole, checked against its SHA-256 and given fresh ones.

The auditor must never believe an answer it cannot check, nor count a supplier that cannot be
reached as one that lost data: being away and failing audits are told apart, and the repair
policy (:mod:`bitdust.storage.repair`) weighs them differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from bitdust.storage.catalogue import BAD, STORED, Catalogue, Challenge, ChunkPlacement
from bitdust.storage.interface import NotInCatalogue
from bitdust.storage.wire import MIN_NONCE, REFUSED, UNREACHABLE

log = logging.getLogger(__name__)

NONCE_SIZE = MIN_NONCE
#: The largest range one challenge hashes: enough to prove possession of a random spot, small
#: enough that answering costs the supplier one read, not a pass over a 16 MiB fragment.
MAX_RANGE = 64 * 1024


class Randomness(Protocol):
    """Where challenges get their randomness: the :mod:`secrets` module, or a test's stand-in."""

    def token_bytes(self, nbytes: int) -> bytes: ...

    def randbelow(self, exclusive_upper_bound: int) -> int: ...


def make_challenges(fragment: bytes, count: int, rng: Randomness = secrets) -> list[Challenge]:
    """``count`` challenges of ``fragment``, each a fresh nonce and a random range of 1 to
    :data:`MAX_RANGE` bytes inside it, with the answer only these bytes give."""
    if not fragment:
        raise ValueError("an empty fragment cannot be audited")
    if type(count) is not int or count < 0:
        raise ValueError(f"{count!r} challenges: expected a count >= 0")
    view = memoryview(fragment)
    challenges = []
    for _ in range(count):
        nonce = rng.token_bytes(NONCE_SIZE)
        length = 1 + rng.randbelow(min(len(fragment), MAX_RANGE))
        offset = rng.randbelow(len(fragment) - length + 1)
        digest = hashlib.sha256(nonce)
        digest.update(view[offset : offset + length])
        challenges.append(Challenge(nonce, offset, length, digest.digest()))
    return challenges


class SupplierLink(Protocol):
    """The auditor's only I/O: :class:`bitdust.storage.suppliers.Suppliers` is one."""

    async def audit(self, idurl: str, fragment_id: bytes, challenge: Challenge) -> bytes:
        """The supplier's answer to ``challenge`` on its copy of ``fragment_id``."""
        ...

    async def get(self, idurl: str, fragment_id: bytes, size: int) -> bytes:
        """The whole fragment ``fragment_id`` (``size`` bytes) as the supplier has it."""
        ...


@dataclass(frozen=True)
class AuditResult:
    """One supplier's audit: placements it proved or failed (``checked``), those it failed (by
    chunk id and fragment index, now marked bad), and, when it could not be reached, why."""

    position: int
    supplier: str
    checked: int
    failed: list[tuple[bytes, int]]
    reachable: bool
    error: str


class Auditor:
    """Audits hired suppliers against the catalogue: ``sample`` random placements per supplier
    per audit; a placement fetched whole gets ``challenges_per_fragment`` fresh challenges."""

    def __init__(
        self,
        catalogue: Catalogue,
        suppliers: SupplierLink,
        sample: int,
        challenges_per_fragment: int = 4,
    ) -> None:
        if sample < 1 or challenges_per_fragment < 1:
            raise ValueError(
                f"an audit samples at least 1 placement and makes at least 1 challenge, "
                f"not {sample} and {challenges_per_fragment}"
            )
        self.catalogue = catalogue
        self.suppliers = suppliers
        self.sample = sample
        self.challenges_per_fragment = challenges_per_fragment

    async def audit_all(self, now: float) -> list[AuditResult]:
        """Audit every hired supplier at once; results by position."""
        hired = await asyncio.to_thread(self.catalogue.suppliers)
        return list(
            await asyncio.gather(*(self.audit_supplier(row.position, now) for row in hired))
        )

    async def audit_supplier(self, position: int, now: float) -> AuditResult:
        """Challenge the supplier at ``position`` on a sample of its placements and record the
        outcome: a placement it cannot prove is marked bad, one it proves is verified at
        ``now``; its health gets the contact (answered or not) and, if it answered, the audit.
        A supplier that holds nothing of ours yet is not contacted."""
        hired = {
            row.position: row.idurl for row in await asyncio.to_thread(self.catalogue.suppliers)
        }
        if position not in hired:
            raise NotInCatalogue(f"no supplier is hired at position {position}")
        idurl = hired[position]
        targets = await asyncio.to_thread(self.catalogue.sample_placements, position, self.sample)
        checked, failed, answered, error = 0, [], False, ""
        for target in targets:
            try:
                proved = await self._check(idurl, target)
            except UNREACHABLE as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                break
            if proved is None:
                continue
            answered = True
            if await self._record_verdict(idurl, target, proved, now):
                checked += 1
                if not proved:
                    failed.append((target.chunk_id, target.index))
        if answered:
            await asyncio.to_thread(self.catalogue.record_contact, position, True, now)
        if error:
            await asyncio.to_thread(self.catalogue.record_contact, position, False, now)
            log.info("audit: supplier %d (%s) could not be reached: %s", position, idurl, error)
        if answered:
            await asyncio.to_thread(self.catalogue.record_audit, position, not failed, now)
        if failed:
            log.warning(
                "audit: supplier %d (%s) failed %d of %d challenges",
                position,
                idurl,
                len(failed),
                checked,
            )
        return AuditResult(position, idurl, checked, failed, not error, error)

    async def _check(self, idurl: str, target: ChunkPlacement) -> bool | None:
        """Whether the supplier proved it holds ``target`` (None: nothing to check it against,
        nothing was asked); UNREACHABLE errors pass through."""
        challenge = await asyncio.to_thread(
            self.catalogue.take_challenge, target.chunk_id, target.index
        )
        if challenge is not None:
            try:
                answer = await self.suppliers.audit(idurl, target.fragment_id, challenge)
            except REFUSED:  # an answer, but not the proof
                return False
            return answer == challenge.digest
        if target.digest is None:
            return None
        return await self._fetch_and_refresh(idurl, target, target.digest)

    async def _fetch_and_refresh(self, idurl: str, target: ChunkPlacement, digest: bytes) -> bool:
        """Out of challenges: fetch the fragment whole, check it against its SHA-256 and, when
        it matches, make fresh challenges from those bytes."""
        try:
            fragment = await self.suppliers.get(idurl, target.fragment_id, target.stored_size)
        except REFUSED:  # an answer, but not the proof
            return False
        if await asyncio.to_thread(lambda: hashlib.sha256(fragment).digest()) != digest:
            return False
        fresh = await asyncio.to_thread(make_challenges, fragment, self.challenges_per_fragment)
        with contextlib.suppress(NotInCatalogue):  # forgotten meanwhile: the verdict goes too
            await asyncio.to_thread(
                self.catalogue.add_challenges, target.chunk_id, target.index, fresh
            )
        return True

    async def _record_verdict(
        self, idurl: str, target: ChunkPlacement, proved: bool, now: float
    ) -> bool:
        """Mark ``target`` verified or bad, unless it moved or its chunk was forgotten while it
        was checked (then the verdict says nothing of what is there now: False)."""
        try:
            return await asyncio.to_thread(
                self.catalogue.mark_placement,
                target.chunk_id,
                target.index,
                STORED if proved else BAD,
                now if proved else None,
                idurl,
            )
        except NotInCatalogue:
            return False
