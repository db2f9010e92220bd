"""Whose a record is: an owner IDURL is shown only when the record's key is that identity's.

A record names its owner's IDURL, but anyone can write any IDURL into a record signed with their
own key. ``OwnerKeys`` fetches the identity behind an IDURL (through the ``fetch`` it is given:
the service passes the identity package's HTTP client, which this module never imports), keeps
its public key for a while, and says whether a record's signing key is that key. Failures are
cached briefly too, so a record naming an unreachable identity cannot make every lookup fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bitdust.dht.records import Record

MAX_ENTRIES = 1024


class OwnerUnknown(Exception):
    """The identity could not be fetched or checked; the message says why."""


@dataclass(frozen=True, slots=True)
class Found:
    """A record as the API shows it: ``owner`` is its IDURL only when verified, else None."""

    record: Record
    owner: str | None


class OwnerKeys:
    """IDURL -> the identity's public key (DER SubjectPublicKeyInfo), fetched and cached."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[bytes]],
        *,
        ttl: float = 600.0,
        failure_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, bytes | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}

    async def public_key(self, idurl: str) -> bytes | None:
        """The key of ``idurl``'s current identity, or None when it cannot be had now."""
        cached = self._cache.get(idurl)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        inflight = self._inflight.get(idurl)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[idurl] = future
        try:
            try:
                key: bytes | None = await self._fetch(idurl)
            except OwnerUnknown:
                key = None
            ttl = self._ttl if key is not None else self._failure_ttl
            self._cache[idurl] = (self._clock() + ttl, key)
            self._cache.move_to_end(idurl)
            while len(self._cache) > MAX_ENTRIES:
                self._cache.popitem(last=False)
            future.set_result(key)
            return key
        finally:
            del self._inflight[idurl]
            if not future.done():
                future.cancel()

    async def verified(self, record: Record) -> Found:
        """``record`` with its owner shown only if the owner identity's key signed it."""
        if record.owner is None:
            return Found(record, None)
        key = await self.public_key(record.owner)
        return Found(record, record.owner if key == record.public_key else None)
