"""The ``nodes-lookup`` service: live, verified nodes offering a role, picked at random.

``find`` reads every index bucket of the role, keeps the entries whose owner IDURL the DHT proved
(the entry is signed by that identity's key), takes each candidate's advert from that identity's
*owned* key (which nobody else can write), and asks the candidate over p2p whether it is there:
the p2p handshake proves the peer holds the identity key, so what is returned is a node that is
up, is who it says, and advertised the role itself. Candidates are tried in random order, a few at
a time, each within a timeout, and at most ``MAX_CANDIDATES`` per call.

Advertising needs no service (``adverts.advertise``): suppliers do it without nodes-lookup.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from bitdust.dht.service import DHTService
from bitdust.lookup.adverts import (
    INDEX_BUCKETS,
    Advert,
    Defect,
    MalformedAdvert,
    Role,
    advert_name,
    decode_advert,
    index_name,
)
from bitdust.node.service import Service, ServiceError
from bitdust.p2p.service import P2PService

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0  # seconds a candidate has to answer
PROBES_AT_ONCE = 8
MAX_CANDIDATES = 64  # candidates examined per find, however many the index shows


class Skip(enum.StrEnum):
    """Why a node in the index was not returned (counted in ``info()``)."""

    UNPROVEN_ENTRY = "index entry not signed by the identity it names"
    OWNER_UNAVAILABLE = "owner identity unavailable"
    NO_ADVERT = "no advert"
    MALFORMED_ADVERT = "malformed advert"
    WITHDRAWN = "withdrawn"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node found offering a role: its proven IDURL, its advert, and its round-trip time."""

    idurl: str
    advert: Advert
    rtt_ms: float


class NodesLookupService(Service):
    """``find(role, count, exclude)``: what proxy-transport and the customer call."""

    dht: DHTService
    p2p: P2PService

    async def start(self) -> None:
        dht = self.node.service("entangled-dht")
        p2p = self.node.service("p2p")
        assert isinstance(dht, DHTService) and isinstance(p2p, P2PService)
        self.dht, self.p2p = dht, p2p
        self.finds = self.returned = 0
        self.skipped: Counter[Skip] = Counter()
        self.refused: Counter[Defect] = Counter()

    async def stop(self) -> None:
        """Nothing to release: every find holds its own work."""

    async def find(self, role: Role, count: int, exclude: Collection[str] = ()) -> list[Candidate]:
        """Up to ``count`` live nodes that advertise ``role``, in random order, none of them in
        ``exclude`` nor this node. Fewer (or none) when the network has no more to offer.
        ServiceError without an identity; the DHT's DHTBusy when it runs too much already."""
        current = self.p2p.propagate.current
        if current is None:
            raise ServiceError(
                "this node has no identity to reach candidates with: bitdust identity create NAME"
            )
        self.finds += 1
        if count < 1:
            return []
        idurls = await self.indexed(role, {*exclude, str(current.identity.idurl)})
        random.shuffle(idurls)
        del idurls[MAX_CANDIDATES:]
        found: list[Candidate] = []
        for start in range(0, len(idurls), PROBES_AT_ONCE):
            batch = idurls[start : start + PROBES_AT_ONCE]
            checked = await asyncio.gather(*(self._check(role, idurl) for idurl in batch))
            found.extend(candidate for candidate in checked if candidate is not None)
            if len(found) >= count:
                break
        self.returned += min(len(found), count)
        return found[:count]

    async def indexed(self, role: Role, exclude: Collection[str] = ()) -> list[str]:
        """The IDURLs the index of ``role`` shows, each proven the signer of its entry (not yet
        their adverts nor their liveness), minus ``exclude``."""
        buckets = await asyncio.gather(
            *(self.dht.get_value(index_name(role, b)) for b in range(INDEX_BUCKETS))
        )
        owners: dict[str, None] = {}
        for bucket in buckets:
            for found in bucket:
                if found.owner is None:
                    self._skip(Skip.UNPROVEN_ENTRY)
                elif found.owner not in exclude:
                    owners[found.owner] = None
        return list(owners)

    async def _check(self, role: Role, idurl: str) -> Candidate | None:
        """``idurl``'s own advert of ``role`` if it is valid and the node answers; else None."""
        try:
            records = await self.dht.get_value(advert_name(role), owner=idurl)
        except ServiceError:
            return self._skip(Skip.OWNER_UNAVAILABLE)
        if not records:
            return self._skip(Skip.NO_ADVERT)
        try:
            advert = decode_advert(records[0].record.value, role)
        except MalformedAdvert as exc:
            log.debug("nodes-lookup: %s: %s", idurl, exc)
            self.refused[exc.defect] += 1
            return self._skip(Skip.MALFORMED_ADVERT)
        if advert.withdrawn:
            return self._skip(Skip.WITHDRAWN)
        try:
            answer = await self.p2p.ping(idurl, PROBE_TIMEOUT)
        except ServiceError as exc:
            log.debug("nodes-lookup: %s advertises %s but is unreachable: %s", idurl, role, exc)
            return self._skip(Skip.UNREACHABLE)
        return Candidate(idurl, advert, answer["rtt_ms"])

    def _skip(self, reason: Skip) -> None:
        self.skipped[reason] += 1

    def info(self) -> dict[str, Any]:
        return {
            "counters": {
                "finds": self.finds,
                "returned": self.returned,
                "skipped": {reason.value: n for reason, n in self.skipped.items()},
                "refused_adverts": {defect.value: n for defect, n in self.refused.items()},
            }
        }

    def status_text(self) -> str:
        return f"nodes-lookup: {self.finds} finds, {self.returned} nodes returned"
