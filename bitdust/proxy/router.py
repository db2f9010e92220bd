"""The asyncio shell of the router's relay: sockets the p2p listener diverts to it (their first
bytes were a relay preamble), paired and spliced byte for byte as :class:`Relay` decides.

It reads preambles on asyncio transports; once a pair exists, it takes both sockets from their
transports and moves each direction's bytes in the kernel (socket, pipe, socket: see
:mod:`bitdust.proxy.splice`), reading a sender only while the router holds nothing of it, so a
receiver that stops reading stops its sender through TCP. It carries out the core's pauses and
closes. It never parses what it forwards: those bytes are the peers' own end-to-end Noise
sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

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
from bitdust.proxy.splice import Buffer, MemoryBuffer, PipePool

log = logging.getLogger(__name__)
_peer_log = RateLimitedLog(log)

PREAMBLE_TIMEOUT = 10.0  # seconds a diverted socket has to finish its preamble
MAX_EARLY_BYTES = 2 + 65535  # what a peer may send before its pair exists: one Noise record


class _Side(asyncio.Protocol):
    """One relayed socket: its preamble first, then bytes for its partner. Once paired, the socket
    leaves its transport, and its bytes move between the kernel's buffers (:class:`_Flow`)."""

    def __init__(self, router: Router, conn: int, transport: asyncio.Transport) -> None:
        self.router = router
        self.conn = conn
        self.transport: asyncio.Transport | None = transport  # until paired
        self.fd = -1  # once paired: the socket, taken from its transport
        self.outgoing: _Flow | None = None  # what it sends, on its way to the partner
        self.incoming: _Flow | None = None  # what the partner sends, on its way to it
        address = transport.get_extra_info("peername") or ("?", 0)
        self.host = address[0]
        self.peername = f"{address[0]}:{address[1]}"
        self.early = b""  # the preamble, then what arrives before the pair exists
        self.opened = False
        self.rate_paused = False  # the route is over its rate
        # a preamble cut short would hold the socket for ever
        self._preamble_timer = router._loop.call_later(router.preamble_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
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
            assert self.transport is not None  # bytes come from it until the pair exists
            self.transport.abort()
            return
        if decoded is None:
            return
        found, size = decoded
        self.early = self.early[size:]
        self.opened = True
        self._preamble_timer.cancel()
        self.router._opened(self, found)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._preamble_timer.cancel()
        self.router._lost(self)

    def take_socket(self) -> None:
        """Leave the transport: asyncio's transports copy every byte through Python, and the
        flows move them with splice(2) on the socket itself."""
        transport = self.transport
        assert transport is not None
        self.fd = os.dup(transport.get_extra_info("socket").fileno())
        transport.set_protocol(asyncio.Protocol())  # its connection_lost no longer ends the side
        transport.abort()
        self.transport = None

    def close(self, graceful: bool) -> None:
        """Close the socket; a graceful close first gives it what waits for it."""
        self._preamble_timer.cancel()
        if self.transport is not None:
            if graceful:
                self.transport.close()  # what it was sent still reaches it
            else:
                self.transport.abort()
            return
        if self.outgoing is not None:
            self.outgoing.stop_reading()
        if graceful and self.incoming is not None:
            self.incoming.finish(self._close_socket)
        else:
            self._close_socket()

    def _close_socket(self) -> None:
        if self.incoming is not None:
            self.incoming.drop()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Flow:
    """One direction of a pair: what ``src`` sends waits in a buffer until ``dst`` takes it.
    ``src`` is read only while nothing waits, so the router holds one buffer per direction,
    and a receiver that stops reading stops its sender through TCP's own flow control."""

    def __init__(self, router: Router, src: _Side, dst: _Side, early: bytes) -> None:
        self.router, self.src, self.dst = router, src, dst
        self.buffer: Buffer | None = MemoryBuffer(early) if early else None
        self.may_read = True
        self.reading = self.writing = False
        self.closed = False
        self._on_drained: Callable[[], None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        return self.buffer.held if self.buffer is not None else 0

    def start(self) -> None:
        if self.held:
            self.router.relay.relayed(self.src.conn, self.held, self.router.now())
            self._drain()
        else:
            self.watch()

    def _on_readable(self) -> None:
        buffer = self.router.pipes.take()  # nothing is held while src is read
        try:
            size = buffer.fill(self.src.fd)
        except BlockingIOError:
            size = -1
        except OSError:
            size = 0  # reset by its peer: the end of what it sends
        if size <= 0:
            self.router.pipes.give(buffer)
            self.buffer = None
            if size == 0:
                self.router._lost(self.src)
            return
        self.buffer = buffer
        self.router.relay.relayed(self.src.conn, size, self.router.now())
        self._drain()
        self.router.pump()

    def _on_writable(self) -> None:
        self._drain()
        self.router.pump()

    def _drain(self) -> None:
        """Give ``dst`` what it takes now; the pair is stalled only while none of it moves."""
        buffer, relay, now = self.buffer, self.router.relay, self.router.now()
        if buffer is None:
            return  # dropped meanwhile
        moved = 0
        try:
            while buffer.held:
                moved += buffer.drain(self.dst.fd)
        except BlockingIOError:
            if moved:
                relay.unblocked(self.dst.conn)
            relay.blocked(self.dst.conn, now)
        except OSError:
            self.router._lost(self.dst)
            return
        else:
            relay.unblocked(self.dst.conn)
            self.buffer = None
            self.router.pipes.give(buffer)
        relay.buffered(self.dst.conn, self.held, now)
        if self.held == 0 and self._on_drained is not None:
            self._end()
        else:
            self.watch()

    def watch(self) -> None:
        """Wait for what lets the bytes move next: ``src`` to have some, or ``dst`` to take."""
        if self.closed:
            return
        loop = self.router._loop
        read = self.may_read and not self.held and not self.src.rate_paused
        if read != self.reading:
            _wait_for(read, loop.add_reader, loop.remove_reader, self.src.fd, self._on_readable)
            self.reading = read
        write = self.held > 0
        if write != self.writing:
            _wait_for(write, loop.add_writer, loop.remove_writer, self.dst.fd, self._on_writable)
            self.writing = write

    def stop_reading(self) -> None:
        """``src`` is closing: what it sent already may still reach ``dst``."""
        self.may_read = False
        self.watch()

    def finish(self, then: Callable[[], None]) -> None:
        """``dst`` is closing: give it what waits (within the stall timeout), then ``then``."""
        self.stop_reading()
        self._on_drained = then
        if not self.held:
            self._end()
            return
        timeout = self.router.relay.limits.stall_timeout
        self._deadline = self.router._loop.call_later(timeout, self._end)

    def _end(self) -> None:
        then, self._on_drained = self._on_drained, None
        self.drop()
        if then is not None:
            then()

    def drop(self) -> None:
        """Forget what waits and stop waiting for either socket."""
        if self.closed:
            return
        self.may_read = False
        self.buffer, buffer = None, self.buffer
        self.watch()
        self.closed = True
        if buffer is not None:
            self.router.pipes.give(buffer)
        if self._deadline is not None:
            self._deadline.cancel()


def _wait_for(
    wanted: bool,
    add: Callable[[int, Callable[[], None]], None],
    remove: Callable[[int], object],
    fd: int,
    callback: Callable[[], None],
) -> None:
    if wanted:
        add(fd, callback)
    else:
        remove(fd)


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
        self.pipes = PipePool()
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

    def _lost(self, side: _Side) -> None:
        if self._sides.pop(side.conn, None) is None:
            return  # closed already
        side.close(graceful=False)
        self.relay.closed(side.conn)
        self.pump()

    def _close(self, conn: int, reason: DropReason) -> None:
        side = self._sides.pop(conn, None)
        if side is None:
            return
        self.relay.closed(conn)
        if reason not in (DropReason.PARTNER_CLOSED, DropReason.ROUTE_CLOSED):
            _peer_log.info("proxy: closed relayed connection from %s: %s", side.peername, reason)
        # a stalled or overfull socket's buffer goes with it; others still get what waits for them
        side.close(graceful=reason not in (DropReason.STALLED, DropReason.OVER_BUFFER))
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
                    if side.outgoing is not None:
                        side.outgoing.watch()
        self._timer.arm(self.relay.get_timer())

    def _on_timer(self) -> None:
        self.relay.handle_timer(self.now())
        self.pump()

    def _pair(self, peer: _Side, routed: _Side) -> None:
        for side in (peer, routed):
            side.take_socket()
        peer.outgoing = routed.incoming = _Flow(self, peer, routed, peer.early)
        routed.outgoing = peer.incoming = _Flow(self, routed, peer, routed.early)
        peer.early = routed.early = b""
        peer.outgoing.start()
        routed.outgoing.start()

    def close(self) -> None:
        """Stop routing: the listener takes no more relayed connections; open ones end."""
        self.endpoint.divert = None
        self._timer.cancel()
        for side in list(self._sides.values()):
            side.close(graceful=False)
        self._sides.clear()
        self.pipes.close()

    @property
    def connections(self) -> int:
        return len(self._sides)
