"""The iterative node lookup (Kademlia paper §2.3): one object per operation, no I/O.

A ``Lookup`` keeps the candidates nearest to its target, says whom to query next (at most alpha
in flight, only among the k nearest live candidates) and learns from replies and timeouts; the
node sends the requests and feeds the answers back. It ends when the k nearest live candidates
have all answered or failed, or when it has spent its query budget: peers that keep inventing
"closer" contacts that never answer cannot make it run forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bitdust.dht.records import Record
from bitdust.dht.routing import id_int
from bitdust.dht.wire import Contact

# A lookup queries at most this many nodes per k.
QUERIES_PER_K = 16
# Candidates kept beyond the ones queried, per k: bounds memory whatever peers send.
CANDIDATES_PER_K = 4


class LookupMode(Enum):
    """What the lookup is for: nodes near an id, the records under a key, or where to STORE."""

    NODE = "node"
    VALUE = "value"
    STORE = "store"


class _State(Enum):
    NEW = 0
    WAIT = 1
    DONE = 2
    FAILED = 3


@dataclass(slots=True)
class _Candidate:
    contact: Contact
    distance: int
    depth: int
    state: _State = _State.NEW


@dataclass(slots=True)
class Lookup:
    """One iterative lookup towards ``target``; see the module docstring."""

    op_id: int
    target: bytes
    mode: LookupMode
    k: int
    alpha: int
    report: bool = True
    record: Record | None = None  # what a STORE lookup publishes once it has found the k nearest
    bootstrap_op: int | None = None  # the join attempt this lookup completes
    records: dict[bytes, Record] = field(default_factory=dict)  # VALUE: newest per signer
    queried: int = 0
    _inflight: int = 0
    _candidates: dict[bytes, _Candidate] = field(default_factory=dict)
    _target_int: int = 0

    def __post_init__(self) -> None:
        self._target_int = id_int(self.target)

    def add_seeds(self, contacts: list[Contact]) -> None:
        """Start from these contacts (the routing table's nearest), depth 1."""
        for contact in contacts:
            self._add(contact, 1)

    def next_queries(self) -> list[Contact]:
        """Whom to query now; each is counted as in flight until ``answered`` or ``failed``."""
        out: list[Contact] = []
        budget = QUERIES_PER_K * self.k
        for candidate in self._ranked()[: self.k]:
            if self._inflight >= self.alpha or self.queried >= budget:
                break
            if candidate.state is _State.NEW:
                candidate.state = _State.WAIT
                self._inflight += 1
                self.queried += 1
                out.append(candidate.contact)
        return out

    def answered(self, node_id: bytes, contacts: tuple[Contact, ...]) -> None:
        """``node_id`` replied with ``contacts`` (already filtered by the caller)."""
        candidate = self._settle(node_id, _State.DONE)
        if candidate is None:
            return
        for contact in contacts:
            if contact.node_id not in self._candidates:
                self._add(contact, candidate.depth + 1)
        self._forget_far_candidates()

    def failed(self, node_id: bytes) -> None:
        """``node_id`` timed out, answered with an error, or could not be asked."""
        self._settle(node_id, _State.FAILED)

    def knows(self, node_id: bytes) -> bool:
        return node_id in self._candidates

    @property
    def finished(self) -> bool:
        """Nothing in flight and nobody left worth asking."""
        if self._inflight:
            return False
        budget = QUERIES_PER_K * self.k
        fresh = any(c.state is _State.NEW for c in self._ranked()[: self.k])
        return not fresh or self.queried >= budget

    def result(self) -> tuple[tuple[Contact, ...], int]:
        """The k nearest nodes that answered, nearest first, and the hops it took to find them."""
        done = [c for c in self._ranked() if c.state is _State.DONE][: self.k]
        return tuple(c.contact for c in done), max((c.depth for c in done), default=0)

    def offer(self, record: Record, max_signers: int) -> None:
        """Keep a verified record for this key: the newest per signer, at most ``max_signers``
        of them, except the owner's record of an owned key, which others cannot crowd out."""
        known = self.records.get(record.public_key)
        if known is None and len(self.records) >= max_signers and record.name is None:
            return
        if known is None or record.created > known.created:
            self.records[record.public_key] = record

    def _add(self, contact: Contact, depth: int) -> None:
        distance = id_int(contact.node_id) ^ self._target_int
        self._candidates[contact.node_id] = _Candidate(contact, distance, depth)

    def _settle(self, node_id: bytes, state: _State) -> _Candidate | None:
        candidate = self._candidates.get(node_id)
        if candidate is None or candidate.state is not _State.WAIT:
            return None
        candidate.state = state
        self._inflight -= 1
        return candidate

    def _ranked(self) -> list[_Candidate]:
        live = [c for c in self._candidates.values() if c.state is not _State.FAILED]
        live.sort(key=lambda c: c.distance)
        return live

    def _forget_far_candidates(self) -> None:
        limit = CANDIDATES_PER_K * self.k
        if len(self._candidates) <= 2 * limit:
            return
        fresh = sorted(
            (c for c in self._candidates.values() if c.state is _State.NEW),
            key=lambda c: c.distance,
        )
        for c in fresh[limit:]:
            del self._candidates[c.contact.node_id]
