"""A node that cannot accept connections, kept reachable through a proxy router.

:class:`ProxyClient` registers with a router over an authenticated p2p session, publishes the
contact the router gives (``tcp://router:port/<route>``), takes each peer the router announces
(dialling out to the router with the one-time token, then answering the peer's handshake end to
end), and renews its route well within the lease. A renewal that fails means the router is
lost: the client avoids it for a while, registers with the next candidate and publishes again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection

from bitdust.logs import RateLimitedLog
from bitdust.p2p.errors import P2PError
from bitdust.p2p.transport import P2PEndpoint
from bitdust.proxy.protocol import (
    INCOMING,
    REGISTER,
    BadMessage,
    Registration,
    decode_token,
)

log = logging.getLogger(__name__)
_peer_log = RateLimitedLog(log)

#: routers to try, best first, none of those in the argument (routers recently lost)
Candidates = Callable[[Collection[str]], Awaitable[list[str]]]
Publish = Callable[[list[str]], None]

AVOID_LOST_ROUTER = 120.0  # seconds a router that failed is not tried again
MAX_RETRY_AFTER = 300.0  # seconds between lookups at most while no router takes the node
WATCH_INTERVAL = 0.5  # seconds between looks at the session with the router


class ClientState(enum.StrEnum):
    """``proxy_transport`` as `network/status?proxy=1` shows it."""

    FINDING = "FINDING"  # looking for a router that takes us
    ROUTED = "ROUTED"  # registered; its contact is published
    STOPPED = "STOPPED"


class ProxyClient:
    def __init__(
        self,
        endpoint: P2PEndpoint,
        candidates: Candidates,
        publish: Publish,
        retry_after: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self.candidates = candidates
        self.publish = publish
        self.retry_after = retry_after
        self.state = ClientState.FINDING
        self.router: str | None = None
        self.registration: Registration | None = None
        self.changes = 0  # routers registered with, for status
        self.published: list[str] = []
        self.first_attempt = asyncio.Event()  # set once the first search for a router ended
        self._lost: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint.on_event(INCOMING, self._incoming)

    async def run(self) -> None:
        """Stay routed until cancelled. While no router takes the node, it asks again after
        ``retry_after`` seconds, doubled each time up to ``MAX_RETRY_AFTER`` (a network with
        no router yet is not asked every few seconds)."""
        pause = self.retry_after
        try:
            while True:
                found = await self._find(quiet=pause > self.retry_after)
                self.first_attempt.set()
                if not found:
                    if self.published:  # its router is gone and none other takes it
                        self._publish([])
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, max(MAX_RETRY_AFTER, self.retry_after))
                    continue
                pause = self.retry_after
                await self._keep()
        finally:
            self.state = ClientState.STOPPED

    async def _find(self, quiet: bool) -> bool:
        """Register with the first candidate that takes the node; ``quiet``: failures were
        logged already."""
        self.state = ClientState.FINDING
        now = time.monotonic()
        self._lost = {r: t for r, t in self._lost.items() if now - t < AVOID_LOST_ROUTER}
        try:
            # routers lost lately come last: tried again when no other one is left
            candidates = await self.candidates(set(self._lost)) or list(self._lost)
        except Exception as exc:  # a lookup that fails is one more reason to retry later
            (log.debug if quiet else log.warning)("proxy: cannot list routers: %s", exc)
            return False
        for router in candidates:
            try:
                registration = await self._register(router)
            except (P2PError, BadMessage) as exc:
                _peer_log.info("proxy: router %s refused or failed: %s", router, exc)
                self._lost[router] = now
                continue
            self.router, self.registration = router, registration
            self.changes += 1
            self.state = ClientState.ROUTED
            self._publish([registration.contact])
            log.info("proxy: routed through %s as %s", router, registration.contact)
            return True
        (log.debug if quiet else log.warning)(
            "proxy: no router takes this node (%d tried); its own contact stays published",
            len(candidates),
        )
        return False

    def _publish(self, contacts: list[str]) -> None:
        if contacts != self.published:
            self.published = contacts
            self.publish(contacts)

    async def _register(self, router: str) -> Registration:
        answer = await self.endpoint.request(router, REGISTER, b"", timeout=self.retry_after)
        registration = Registration.decode(answer)
        registration.router()  # a contact this node could not be reached at is refused here
        return registration

    async def _keep(self) -> None:
        """Renew the route at a third of its lease, or at once when the session with the
        router is gone (it died, or closed the idle session), until renewing fails."""
        assert self.router is not None and self.registration is not None
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.registration.lease / 3
        while True:
            await asyncio.sleep(max(0.0, min(WATCH_INTERVAL, renew_at - loop.time())))
            if loop.time() < renew_at and self.endpoint.established(self.router) is not None:
                continue
            renew_at = loop.time() + self.registration.lease / 3
            try:
                self.registration = await self._register(self.router)
            except (P2PError, BadMessage) as exc:
                log.warning("proxy: lost router %s: %s", self.router, exc)
                self._lost[self.router] = time.monotonic()
                self.router = self.registration = None
                return

    def _incoming(self, peer: str, data: bytes) -> None:
        if peer != self.router or self.registration is None:
            _peer_log.info("proxy: %s announced a connection but is not our router", peer)
            return
        try:
            token = decode_token(data)
        except BadMessage as exc:
            _peer_log.info("proxy: router %s: %s", peer, exc)
            return
        host, port, _ = self.registration.router()
        task = asyncio.get_running_loop().create_task(self._accept(host, port, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, host: str, port: int, token: str) -> None:
        try:
            await self.endpoint.accept_relayed(host, port, token)
        except (OSError, TimeoutError, P2PError) as exc:
            _peer_log.info("proxy: cannot take a relayed connection at %s:%d: %s", host, port, exc)

    def status(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "router": self.router,
            "contact": self.registration.contact if self.registration else None,
            "router_changes": self.changes,
        }
