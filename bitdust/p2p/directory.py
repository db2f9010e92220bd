"""Peers' identities as p2p needs them: fetched from their identity servers, verified, cached.

A session trusts a peer only as far as its identity document: the document must verify, name the
IDURL asked for among its sources, and carry an acceptable RSA key. A document is cached for the
IDURL it was fetched for (and the source it came from), never for the other IDURLs it names:
anyone can list someone else's IDURL among the sources of their own. A newer revision than the
cached one (a peer says so in its handshake) or a failed connection makes the next lookup fetch
again. A fetch tries the IDURL asked for, then the other sources its last verified document named
(a peer whose first identity server is down is found on its second). Failures are remembered for
a short while, so a peer that claims IDURLs nobody serves cannot make this node fetch in a loop,
and fetches run a few at a time. The sources outlive the process (``known_sources``, and the
``sources`` a directory starts with: :mod:`bitdust.p2p.sources` keeps them in a file).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust import keysize, rsakeys
from bitdust.identity.document import Identity, parse_identity
from bitdust.identity.errors import IdentityError
from bitdust.identity.signing import verify
from bitdust.p2p.handshake import PeerIdentity

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[bytes]]
#: each IDURL's sources, as its last verified identity document named them
Sources = dict[str, tuple[str, ...]]

MAX_CACHED = 4096
FAILURE_MEMORY = 30.0  # seconds a failed fetch is not retried
MAX_CONCURRENT_FETCHES = 8


class PeerUnknown(Exception):
    """The identity cannot be fetched or does not verify; the message says why."""


@dataclass(frozen=True)
class Peer:
    """A verified identity document and what sessions need of it."""

    document: Identity
    identity: PeerIdentity

    @property
    def idurl(self) -> str:
        return self.document.idurl

    def tcp_contacts(self) -> list[Contact]:
        """Each ``tcp://host:port`` contact (direct) or ``tcp://host:port/<route>`` (through
        the proxy router at host:port), in the document's order; anything else is skipped."""
        found = []
        for contact in self.document.contacts:
            scheme, _, rest = contact.partition("://")
            address, _, route = rest.partition("/")
            host, _, port = address.rpartition(":")
            valid_port = port.isascii() and port.isdigit() and 0 < int(port) < 65536
            valid_route = not route or (
                route.isascii() and route.replace("-", "").replace("_", "").isalnum()
            )
            if scheme == "tcp" and host and valid_port and valid_route and len(route) <= 64:
                found.append(Contact(host.strip("[]"), int(port), route))
        return found


class Contact(NamedTuple):
    host: str
    port: int
    route: str = ""  # non-empty: the node is reached through the router at host:port


class Directory:
    """Verified peer identities by IDURL; ``fetch(idurl)`` returns a document's bytes, and
    ``sources`` are each IDURL's sources as an earlier run learned them."""

    def __init__(
        self,
        fetch: Fetch,
        accept_legacy: bool = False,
        sources: Sources | None = None,
    ) -> None:
        self.fetch = fetch
        self.accept_legacy = accept_legacy
        self._cache: OrderedDict[str, Peer] = OrderedDict()
        # each IDURL's sources as its last verified document named them: kept when the cache
        # forgets a peer, as that is when its first source may be the one that is down
        self._sources: OrderedDict[str, tuple[str, ...]] = OrderedDict(
            list((sources or {}).items())[-MAX_CACHED:]
        )
        self._failed: dict[str, tuple[float, str]] = {}
        self._inflight: dict[str, asyncio.Task[Peer]] = {}
        self._fetching = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)

    async def peer(self, idurl: str, min_revision: int = 0) -> Peer:
        """The peer at ``idurl``, fetched when not cached or cached older than ``min_revision``."""
        cached = self._cache.get(idurl)
        if cached is not None and cached.document.revision >= min_revision:
            self._cache.move_to_end(idurl)
            return cached
        failed = self._failed.get(idurl)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY:
            raise PeerUnknown(failed[1])
        task = self._inflight.get(idurl)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(idurl))
            self._inflight[idurl] = task
            task.add_done_callback(lambda _: self._inflight.pop(idurl, None))
        return await asyncio.shield(task)

    async def primary(self, idurl: str) -> Peer:
        """The peer at ``idurl`` as its first source names it, which is what its sessions
        claim. A first source that does not name ``idurl`` back in its own document is refused:
        a document cannot send this node to someone else."""
        peer = await self.peer(idurl)
        if peer.idurl == idurl:
            return peer
        first = await self.peer(peer.idurl)
        if idurl not in first.document.sources:
            raise PeerUnknown(
                f"{idurl} names {peer.idurl} as its first source, whose identity does not name "
                f"{idurl}"
            )
        return first

    async def peer_identity(self, idurl: str, min_revision: int) -> PeerIdentity | None:
        """What a session checks a handshake claim against; None when it cannot be had."""
        try:
            return (await self.peer(idurl, min_revision)).identity
        except PeerUnknown as exc:
            log.info("p2p: %s", exc)
            return None

    def known_sources(self) -> Sources:
        """Each IDURL's sources as its last verified document named them, least recent first."""
        return dict(self._sources)

    def forget(self, idurl: str) -> None:
        """Fetch again next time (a connection to the cached contacts failed)."""
        peer = self._cache.pop(idurl, None)
        if peer is not None:
            for source in peer.document.sources:
                self._cache.pop(source, None)

    async def _fetch(self, idurl: str) -> Peer:
        async with self._fetching:
            failures = []
            for source in dict.fromkeys((idurl, *self._sources.get(idurl, ()))):
                try:
                    document, key = await self._fetch_from(source, idurl)
                    break
                except PeerUnknown as exc:
                    failures.append(str(exc))
            else:
                reason = "; ".join(failures)
                self._failed[idurl] = (time.monotonic(), reason)
                self._trim_failures()
                raise PeerUnknown(reason)
        self._failed.pop(idurl, None)
        peer = Peer(document, PeerIdentity(document.sources, document.revision, key))
        for fetched_for in {idurl, source}:
            self._cache[fetched_for] = peer
            self._cache.move_to_end(fetched_for)
        self._sources[idurl] = document.sources
        self._sources.move_to_end(idurl)
        for known in (self._cache, self._sources):
            while len(known) > MAX_CACHED:
                known.popitem(last=False)
        return peer

    async def _fetch_from(self, source: str, idurl: str) -> tuple[Identity, rsa.RSAPublicKey]:
        """The verified document at ``source`` if it names ``idurl``, and its key."""
        try:
            document = parse_identity(await self.fetch(source))
            verify(document, self.accept_legacy)
            if idurl not in document.sources:
                raise PeerUnknown(f"{source}: the identity found there does not name {idurl}")
            return document, rsakeys.check_public_key(document.public_key)
        except (IdentityError, keysize.KeyRefused) as exc:
            raise PeerUnknown(f"{source}: {exc}") from None

    def _trim_failures(self) -> None:
        if len(self._failed) > MAX_CACHED:
            cutoff = time.monotonic() - FAILURE_MEMORY
            self._failed = {k: v for k, v in self._failed.items() if v[0] >= cutoff}
            while len(self._failed) > MAX_CACHED:
                self._failed.pop(next(iter(self._failed)))
