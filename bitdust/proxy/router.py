"""The asyncio shell of the router's relay: sockets the p2p listener diverts to it (their first
bytes were a relay preamble), paired and spliced byte for byte as :class:`Relay` decides.

It reads preambles, forwards bytes between paired sockets, passes asyncio's flow control
through (a receiver's full send buffer pauses its sender's reading, so the router holds at most
a high-water mark per direction), and carries out the core's pauses and closes. It never parses
what it forwards: those bytes are the peers' own end-to-end Noise sessions.
"""

from __future__ import annotations

import asyncio
import logging

from bitdust.coretimer import CoreTimer
from bitdust.logs import RateLimitedLog
from bitdust.p2p import preamble
from bitdust.p2p.errors import P2PError
from bitdust.p2p.transport import Divert, P2PEndpoint
from bitdust.proxy.protocol import INCOMING, REGISTER, Registration, encode_token
from bitdust.proxy.relay import (
    Close,
    DropReason,
    Notify,
    Pair,
    Pause,
    Relay,
    RelayRefused,
    Resume,
)

log = logging.getLogger(__name__)
_peer_log = RateLimitedLog(log)

PREAMBLE_TIMEOUT = 10.0  # seconds a diverted socket has to finish its preamble
MAX_EARLY_BYTES = 2 + 65535  # what a peer may send before its pair exists: one Noise record


class _Side(asyncio.Protocol):
    """One relayed socket: its preamble first, then bytes for its partner."""

    def __init__(self, router: Router, conn: int, transport: asyncio.Transport) -> None:
        self.router = router
        self.conn = conn
        self.transport = transport
        self.partner: _Side | None = None
        self.host = (transport.get_extra_info("peername") or ("?",))[0]
        self.early = b""  # the preamble, then what arrives before the pair exists
        self.opened = False
        self.flow_paused = False  # the partner cannot take more yet
        self.rate_paused = False  # the route is over its rate
        # a preamble cut short would hold the socket for ever
        self._preamble_timer = router._loop.call_later(router.preamble_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.partner is not None:
            self.partner.transport.write(data)
            self.router._relayed(self, len(data))
            return
        self.early += data
        if not self.opened:
            self._read_preamble()
        elif len(self.early) > MAX_EARLY_BYTES:
            self.router._close(self.conn, DropReason.OVER_BUFFER)

    def _read_preamble(self) -> None:
        try:
            decoded = preamble.decode(self.early)
        except preamble.BadPreamble as exc:
            _peer_log.info("proxy: %s: %s", self.peername, exc)
            self.transport.abort()
            return
        if decoded is None:
            return
        found, size = decoded
        self.early = self.early[size:]
        self.opened = True
        self._preamble_timer.cancel()
        self.router._opened(self, found)

    @property
    def peername(self) -> str:
        address = self.transport.get_extra_info("peername") or ("?", 0)
        return f"{address[0]}:{address[1]}"

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._preamble_timer.cancel()
        self.router._lost(self)

    def pause_writing(self) -> None:
        self.router.relay.blocked(self.conn, self.router.now())
        if self.partner is not None:
            self.partner.flow_paused = True
            self.partner._update_reading()
        self.router.pump()

    def resume_writing(self) -> None:
        self.router.relay.unblocked(self.conn)
        if self.partner is not None:
            self.partner.flow_paused = False
            self.partner._update_reading()
        self.router.pump()

    def _update_reading(self) -> None:
        if self.transport.is_closing():
            return
        if self.flow_paused or self.rate_paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()


class Router:
    """The relay on a p2p endpoint: routed nodes register over their sessions with it
    (``proxy/register``), peers reach them at ``contact/<route>``, and a routed node hears of
    a waiting peer over its existing session — never a new one, as its contact is this router."""

    def __init__(
        self,
        relay: Relay,
        endpoint: P2PEndpoint,
        contact: str,
        preamble_timeout: float = PREAMBLE_TIMEOUT,
    ) -> None:
        self.relay = relay
        self.preamble_timeout = preamble_timeout
        self.endpoint = endpoint
        self.contact = contact
        self._loop = asyncio.get_running_loop()
        self._sides: dict[int, _Side] = {}
        self._next = 0
        self._timer = CoreTimer(self._loop, self._on_timer, self.now)
        endpoint.divert = Divert(self.take)
        endpoint.on_request(REGISTER, self._register)

    async def _register(self, peer: str, data: bytes) -> bytes:
        try:
            route = self.relay.register(peer, self.now())
        except RelayRefused as exc:
            raise P2PError(str(exc)) from None
        self.pump()  # the lease is a timer of the core
        return Registration(f"{self.contact}/{route}", self.relay.limits.lease).encode()

    def _notify(self, idurl: str, token: str) -> bool:
        connection = self.endpoint.established(idurl)
        if connection is None:
            return False
        connection.session.send_event(INCOMING, encode_token(token))
        connection.pump()
        return True

    def now(self) -> float:
        return self._loop.time()

    def take(self, transport: asyncio.Transport, first: bytes) -> None:
        """The p2p listener's divert: this socket opened with a relay preamble. Refused past
        the limits on relayed sockets, in all and from its address."""
        host = (transport.get_extra_info("peername") or ("?",))[0]
        limits = self.relay.limits
        same = sum(1 for side in self._sides.values() if side.host == host)
        if len(self._sides) >= limits.connections or same >= limits.connections_per_address:
            _peer_log.warning("proxy: %s: too many relayed connections, refusing more", host)
            transport.abort()
            return
        self._next += 1
        side = _Side(self, self._next, transport)
        self._sides[side.conn] = side
        transport.set_protocol(side)
        side.data_received(first)

    def _opened(self, side: _Side, found: preamble.Preamble) -> None:
        self.relay.opened(side.conn, found, self.now())
        self.pump()

    def _relayed(self, side: _Side, size: int) -> None:
        assert side.partner is not None
        now = self.now()
        self.relay.relayed(side.conn, size, now)
        self.relay.buffered(side.partner.conn, side.partner.transport.get_write_buffer_size(), now)
        self.pump()

    def _lost(self, side: _Side) -> None:
        self._sides.pop(side.conn, None)
        self.relay.closed(side.conn)
        self.pump()

    def _close(self, conn: int, reason: DropReason) -> None:
        side = self._sides.pop(conn, None)
        if side is None:
            return
        self.relay.closed(conn)
        if reason not in (DropReason.PARTNER_CLOSED, DropReason.ROUTE_CLOSED):
            _peer_log.info("proxy: closed relayed connection from %s: %s", side.peername, reason)
        if reason in (DropReason.STALLED, DropReason.OVER_BUFFER):
            side.transport.abort()  # its buffer goes with it
        else:
            side.transport.close()  # what it was sent still reaches it
        self.pump()

    def pump(self) -> None:
        while (action := self.relay.next_action()) is not None:
            match action:
                case Notify(idurl, token):
                    if not self._notify(idurl, token):
                        self.relay.unregister(idurl)  # no session left to tell it through
                case Pair(peer, routed):
                    self._pair(self._sides[peer], self._sides[routed])
                case Close(conn, reason):
                    self._close(conn, reason)
                case Pause(conn) | Resume(conn) if conn in self._sides:
                    side = self._sides[conn]
                    side.rate_paused = isinstance(action, Pause)
                    side._update_reading()
        self._timer.arm(self.relay.get_timer())

    def _on_timer(self) -> None:
        self.relay.handle_timer(self.now())
        self.pump()

    def _pair(self, peer: _Side, routed: _Side) -> None:
        peer.partner, routed.partner = routed, peer
        for side in (peer, routed):
            if side.early:
                early, side.early = side.early, b""
                side.data_received(early)

    def close(self) -> None:
        """Stop routing: the listener takes no more relayed connections; open ones end."""
        self.endpoint.divert = None
        self._timer.cancel()
        for side in list(self._sides.values()):
            side.transport.abort()
        self._sides.clear()

    @property
    def connections(self) -> int:
        return len(self._sides)
