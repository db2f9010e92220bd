"""The asyncio shell around :class:`~bitdust.p2p.session.Session`: TCP sockets, one timer per
session, futures and streams for the services that talk to peers.

It owns the sockets and the clock (``loop.time()``) and nothing else: every protocol decision is
the core's. After each input it writes what the core queued, turns the core's events into
resolved futures and handler calls, and re-arms the session's timer. While the core waits for a
peer's identity the shell stops reading that socket. Incoming connections are capped per source
address and in total; sessions are reused by peer IDURL, and the core closes idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mmap
import os
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bitdust.coretimer import CoreTimer
from bitdust.logs import RateLimitedLog
from bitdust.netaddr import normalize_addr
from bitdust.p2p import preamble
from bitdust.p2p.directory import Directory, PeerUnknown
from bitdust.p2p.errors import (
    P2PError,
    PeerBusy,
    PeerUnreachable,
    RequestRefused,
    SessionEnded,
)
from bitdust.p2p.events import (
    CloseReason,
    Established,
    Event,
    EventReceived,
    PeerIdentityNeeded,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SessionClosed,
    StreamClosed,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.preamble import Kind, Preamble
from bitdust.p2p.session import Session, SessionTimeouts

log = logging.getLogger(__name__)
_peer_log = RateLimitedLog(log)  # peers choose how often these happen

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
EventHandler = Callable[[str, bytes], None]
StreamHandler = Callable[[str, "IncomingStream"], Awaitable[None]]
Resolve = Callable[[str], Awaitable[str]]


#: What one read from a socket may bring. A receiving stream reads as fast as the sender fills
#: the socket: 1 MiB a read in place of 256 KiB cut its receiver's CPU per GiB by about 5 % (fewer
#: wake-ups, fewer records split between reads), and resident only once reads reach that far.
READ_BUFFER = 1024 * 1024
RETRY_PAUSE = 0.5  # seconds between attempts of an idempotent request whose session was lost
CONNECTION_ENDED = frozenset({CloseReason.CONNECTION_LOST, CloseReason.TRUNCATED})
_END_OF_STREAM = memoryview(b"")

NO_IDENTITY = (
    "this node has no identity yet: create one (bitdust identity create NAME) or restore a key "
    "backup (bitdust identity restore FILE)"
)


@dataclass(frozen=True)
class EndpointLimits:
    max_sessions: int = 1000
    sessions_per_address: int = 16  # incoming, per source IP
    connect_timeout: float = 10.0  # TCP connect and handshake, per contact
    request_timeout: float = 60.0
    timeouts: SessionTimeouts = field(default_factory=SessionTimeouts)

    @classmethod
    def within_descriptors(cls, nofile: int) -> EndpointLimits:
        """The defaults, shrunk so that sessions hold at most a third of ``nofile`` descriptors
        (the process's soft ``RLIMIT_NOFILE``): the API and the other services keep the rest."""
        limits = cls()
        total = max(1, min(limits.max_sessions, nofile // 3))
        per_address = min(limits.sessions_per_address, total)
        return dataclasses.replace(limits, max_sessions=total, sessions_per_address=per_address)


@dataclass(frozen=True)
class Divert:
    """Where the listener hands a connection that opens with a relay preamble (the proxy
    router, sharing p2p's port): ``take(transport, first_bytes)`` owns the socket from then."""

    take: Callable[[asyncio.Transport, bytes], None]


class Connection(asyncio.BufferedProtocol):
    """One TCP connection and its session core.

    ``preamble`` is written before the session's first byte: a relay preamble when the session
    runs through a proxy router (``routed``), either as the peer dialling a routed node or as
    the routed node taking the connection the router announced."""

    def __init__(
        self, endpoint: P2PEndpoint, session: Session, outgoing: bool, preamble: bytes = b""
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self.outgoing = outgoing
        self.preamble = preamble
        self.routed = bool(preamble)
        # an incoming direct connection may still turn out relayed: its first bytes, held
        self._first: bytes | None = b"" if not (outgoing or preamble) else None
        self.address: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.established: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._timer = CoreTimer(loop, self._on_timer, loop.time)
        self._writable = asyncio.Event()
        self._writable.set()
        self._slot_freed = asyncio.Event()  # an answer came or a stream ended
        self._requests: dict[int, asyncio.Future[bytes]] = {}
        self._sending: dict[int, OutgoingStream] = {}
        self._receiving: dict[int, IncomingStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.BufferedProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio's classes: no isinstance check here
        self.transport = cast(asyncio.Transport, transport)
        self.address = normalize_addr(transport.get_extra_info("peername") or ("", 0))
        if not self.outgoing and not self.endpoint._admit(self):
            transport.abort()
            return
        self.endpoint._connections.add(self)
        if self.preamble:
            self.transport.write(self.preamble)
        self.pump()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.endpoint._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        data: bytes | memoryview = self.endpoint._read_buffer[:nbytes]
        if self._first is not None:
            data = self._sniff(self._first + data)
            if not data:
                return
        self.session.receive_data(data, self._loop.time())
        self.pump()

    def _sniff(self, data: bytes) -> bytes:
        """``data`` for the session once it cannot be a relay preamble; b"" while it may be
        one, or once it was one and the socket went to the router (DESIGN §9: one port)."""
        divert = self.endpoint.divert
        if divert is None or not preamble.could_be_relayed(data):
            self._first = None
            return data
        if len(data) < len(preamble.MAGIC):
            self._first = data
            return b""
        self._first = None
        self.endpoint._connections.discard(self)
        self._timer.cancel()
        assert self.transport is not None
        divert.take(self.transport, data)  # sets its own protocol: nothing more reaches us
        return b""

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(self._loop.time())
        self.pump()
        self.endpoint._connections.discard(self)
        self.endpoint.counts["bytes_received"] += self.session.bytes_in
        self.endpoint.counts["bytes_sent"] += self.session.bytes_out
        self._timer.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- driving the core ---------------------------------------------------------------------

    def pump(self) -> None:
        """Write what the core queued, handle its events, re-arm its timer."""
        session = self.session
        while True:
            records = session.records_to_send()
            if records and self.transport is not None and not self.transport.is_closing():
                self.transport.writelines(records)
            event = session.next_event()
            if event is None:
                break
            self._handle(event)
        deadline = session.get_timer()
        armed = self._timer.deadline
        # a deadline that only moved later (the idle one, at every record) keeps the callback
        # already scheduled: it fires early, the core finds nothing due, and it is re-armed then
        if deadline is None or armed is None or deadline < armed:
            self._timer.arm(deadline)

    def _on_timer(self) -> None:
        self.session.handle_timer(self._loop.time())
        self.pump()

    def _handle(self, event: Event) -> None:
        match event:  # the events of a stream's data first: they are most of them
            case StreamData(stream_id, data):
                self._receiving[stream_id]._feed(data)
            case StreamWritable(stream_id):
                self._sending[stream_id]._credit.set()
            case PeerIdentityNeeded(idurl, revision):
                assert self.transport is not None
                self.transport.pause_reading()  # the core holds input until it knows the peer
                self._spawn(self._answer_identity(idurl, revision))
            case Established():
                self.endpoint.counts["sessions_opened"] += 1
                self.endpoint._register(self)
                if not self.established.done():
                    self.established.set_result(None)
            case RequestReceived(request_id, kind, data):
                self._spawn(self._serve_request(request_id, kind, data))
            case ResponseReceived(request_id, data):
                _settle(self._requests.pop(request_id, None), data)
                self._slot_freed.set()
            case RequestFailed(request_id, reason):
                _settle(self._requests.pop(request_id, None), RequestRefused(reason))
                self._slot_freed.set()
            case EventReceived(kind, data):
                self.endpoint._deliver_event(self.peer, kind, data)
            case StreamOpened(stream_id, kind, header):
                self._open_incoming(stream_id, kind, header)
            case StreamEnded(stream_id):
                self._receiving[stream_id]._end(None)
            case StreamReset(stream_id, reason):
                incoming = self._receiving.pop(stream_id)
                incoming._end(SessionEnded(CloseReason.PEER, f"the sender reset it: {reason}"))
            case StreamClosed(stream_id, reason):
                self._sending.pop(stream_id)._closed(reason)
                self._slot_freed.set()
            case SessionClosed(reason, detail):
                self._closed(reason, detail)

    def _closed(self, reason: CloseReason, detail: str) -> None:
        error = SessionEnded(
            reason, f"session with {self.peer or self.address[0]}: {detail or reason.value}"
        )
        if reason not in (CloseReason.LOCAL, CloseReason.IDLE, CloseReason.PEER):
            _peer_log.info(
                "p2p: session with %s closed: %s",
                self.peer or self.address[0],
                detail or reason.value,
            )
        if not self.established.done():
            self.endpoint.counts["sessions_failed"] += 1
            self.established.set_exception(error)
            self.established.exception()  # retrieved: a dial that gave up must not warn
        for future in self._requests.values():
            _settle(future, error)
        for outgoing in self._sending.values():
            outgoing._fail(error)
        for incoming in self._receiving.values():
            incoming._end(error)
        self._requests.clear()
        self._sending.clear()
        self._receiving.clear()
        for task in self._tasks:  # handlers whose answers can no longer be sent
            task.cancel()
        self._writable.set()
        self._slot_freed.set()  # waiters see the session ended
        self.endpoint._unregister(self)
        if self.transport is not None:
            self._loop.call_soon(self.transport.close)  # after the CLOSE frame is written

    # -- the peer's side ----------------------------------------------------------------------

    @property
    def peer(self) -> str | None:
        return self.session.peer_idurl

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_identity(self, idurl: str, revision: int) -> None:
        identity = await self.endpoint.directory.peer_identity(idurl, revision)
        self.session.peer_identity(identity, self._loop.time())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.pump()

    async def _serve_request(self, request_id: int, kind: str, data: bytes) -> None:
        handler = self.endpoint._request_handlers.get(kind)
        assert self.peer is not None
        reply, error = b"", ""
        try:
            if handler is None:
                raise P2PError(f"this node does not serve {kind!r} requests")
            reply = await handler(self.peer, data)
        except P2PError as exc:
            error = str(exc) or type(exc).__name__
        except Exception:
            log.exception("p2p: handler of %r requests failed", kind)
            error = "internal error"
        if self.session.closed is not None:
            return
        if not error:
            try:
                self.session.send_response(request_id, reply)
            except ValueError as exc:  # a reply larger than a frame
                error = str(exc)
        if error:
            self.session.send_request_error(request_id, error)
        self.pump()

    def _open_incoming(self, stream_id: int, kind: str, header: bytes) -> None:
        handler = self.endpoint._stream_handlers.get(kind)
        if handler is None:
            self.session.stream_refuse(stream_id, f"this node takes no {kind!r} streams")
            return
        assert self.peer is not None
        incoming = IncomingStream(self, stream_id, kind, header)
        self._receiving[stream_id] = incoming
        self._spawn(self._serve_stream(handler, incoming))

    async def _serve_stream(self, handler: StreamHandler, incoming: IncomingStream) -> None:
        assert self.peer is not None
        try:
            await handler(self.peer, incoming)
        except SessionEnded:
            pass
        except Exception:
            log.exception("p2p: handler of %r streams failed", incoming.kind)
            incoming.refuse("internal error")
        else:  # read to its end: accepted; else refused (nobody reads it: it would hold the
            # sender for ever)
            self.session.stream_done(incoming.stream_id)
            self.pump()
        self._receiving.pop(incoming.stream_id, None)

    # -- our side -----------------------------------------------------------------------------

    async def request(self, kind: str, data: bytes, timeout: float) -> bytes:
        """Send a request and await its answer; waits first, within ``timeout``, while as many
        requests as the wire allows await answers."""
        try:
            async with asyncio.timeout(timeout):
                request_id = await self._when_free(lambda: self.session.send_request(kind, data))
                future = self._loop.create_future()
                self._requests[request_id] = future
                self.pump()
                try:
                    return await future
                finally:
                    self._requests.pop(request_id, None)
        except TimeoutError:
            raise P2PError(
                f"{self.peer} did not answer a {kind!r} request in {timeout:g} s"
            ) from None

    async def open_stream(self, kind: str, header: bytes) -> OutgoingStream:
        """Open a stream; waits while as many streams as the wire allows are open."""
        stream_id = await self._when_free(lambda: self.session.open_stream(kind, header))
        outgoing = OutgoingStream(self, stream_id)
        self._sending[stream_id] = outgoing
        self.pump()
        return outgoing

    async def _when_free(self, start: Callable[[], int]) -> int:
        """``start()`` as soon as the wire's per-direction limit lets it (PeerBusy: wait until
        an answer arrives or a stream ends)."""
        while True:
            try:
                return start()
            except PeerBusy:
                self._slot_freed.clear()
                await self._slot_freed.wait()

    def close(self) -> None:
        self.session.close()
        self.pump()

    def info(self) -> dict[str, Any]:
        return {
            "idurl": self.peer,
            "direction": "outgoing" if self.outgoing else "incoming",
            "route": "routed" if self.routed else "direct",
            "address": f"{self.address[0]}:{self.address[1]}",
            "state": "open" if self.session.established else "handshake",
            "bytes_in": self.session.bytes_in,
            "bytes_out": self.session.bytes_out,
            "streams": len(self._sending) + len(self._receiving),
        }


class OutgoingStream:
    """A stream we send on. ``write`` returns once the peer's credit took every byte (a slow
    reader slows it down); ``finish`` waits until the peer read everything."""

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._credit = asyncio.Event()
        self._done: asyncio.Future[None] = connection._loop.create_future()

    async def write(self, data: bytes) -> None:
        session = self.connection.session
        view = memoryview(data)
        while view:
            await self.connection._writable.wait()
            if self._done.done():
                self._done.result()  # raises why the stream ended
            self._credit.clear()
            sent = session.stream_send(self.stream_id, view)
            self.connection.pump()
            view = view[sent:]
            if view and not sent:
                await self._credit.wait()  # set by new credit, and by the stream's end

    async def finish(self) -> None:
        """End the stream and wait until the peer read all of it."""
        if not self._done.done():
            self.connection.session.stream_end(self.stream_id)
            self.connection.pump()
        await asyncio.shield(self._done)

    def reset(self, reason: str) -> None:
        if not self._done.done():
            self.connection.session.stream_reset(self.stream_id, reason)
            self.connection._sending.pop(self.stream_id, None)
            self.connection._slot_freed.set()
            self._fail(SessionEnded(CloseReason.LOCAL, f"stream reset: {reason}"))
            self.connection.pump()

    def _closed(self, reason: str) -> None:
        if reason:
            self._fail(RequestRefused(f"{self.connection.peer} refused the stream: {reason}"))
        else:
            _settle(self._done, None)

    def _fail(self, error: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(error)
            self._done.exception()
        self._credit.set()


class IncomingStream:
    """A stream a peer sends us. ``read`` returns the next chunk, an empty one at the end;
    reading is what gives the sender credit again. What it holds unread never exceeds one
    window. A chunk is a view of the record it arrived in (a consumer that keeps many should
    join them)."""

    def __init__(self, connection: Connection, stream_id: int, kind: str, header: bytes) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.kind = kind
        self.header = header
        self._chunks: deque[memoryview] = deque()
        self._ended = False
        self._error: Exception | None = None
        self._ready = asyncio.Event()

    async def read(self) -> memoryview:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return _END_OF_STREAM
            self._ready.clear()
            await self._ready.wait()
        chunk = self._chunks.popleft()
        if self.connection.session.stream_consumed(self.stream_id, len(chunk)):
            self.connection.pump()  # the sender's new credit
        return chunk

    @property
    def finished(self) -> bool:
        """Read to its end, refused, or failed."""
        return self._ended and not self._chunks

    def __aiter__(self) -> IncomingStream:
        return self

    async def __anext__(self) -> memoryview:
        chunk = await self.read()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def refuse(self, reason: str) -> None:
        """Stop reading, or refuse what was read whole (the receiving service could not keep
        it): the sender's ``write``/``finish`` raise with ``reason``. Once the handler returned
        the stream was accepted, and this does nothing."""
        if self._error is not None:
            return
        self.connection.session.stream_refuse(self.stream_id, reason)
        self.connection._receiving.pop(self.stream_id, None)
        self._end(SessionEnded(CloseReason.LOCAL, f"stream refused: {reason}"))
        self.connection.pump()

    def _feed(self, data: memoryview) -> None:
        self._chunks.append(data)
        self._ready.set()

    def _end(self, error: Exception | None) -> None:
        self._ended = True
        if error is not None:
            self._chunks.clear()
            self._error = error
        self._ready.set()


class P2PEndpoint:
    """Sessions to peers by IDURL over TCP: listen, dial, reuse, serve handlers.

    ``local()`` gives this node's current handshake identity (a new identity revision shows in
    the next session; None while the node has none: sessions are refused); ``directory``
    fetches and verifies peers' identities; ``resolve`` turns a contact's host into an address
    (the node's host map, then DNS).
    """

    def __init__(
        self,
        local: Callable[[], LocalPeer | None],
        directory: Directory,
        resolve: Resolve,
        limits: EndpointLimits = EndpointLimits(),
    ) -> None:
        self.local = local
        self.directory = directory
        self.resolve = resolve
        self.limits = limits
        self.server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._by_peer: dict[str, list[Connection]] = {}
        self._dialing: dict[str, asyncio.Task[Connection]] = {}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._event_handlers: dict[str, EventHandler] = {}
        self._stream_handlers: dict[str, StreamHandler] = {}
        self.divert: Divert | None = None  # set by the proxy router sharing the listener
        # every connection reads into this one buffer: the session handles what a read brought
        # before the next read, decrypting records straight from it and copying only a
        # record's beginning, so nothing else holds on to it (and a node with many sessions
        # does not keep a buffer for each); mapped, not allocated, so that its pages become
        # resident only as reads reach them (an idle node's reads are small)
        self._read_buffer = memoryview(mmap.mmap(-1, READ_BUFFER))
        # since the endpoint started: sessions established, sessions that ended before their
        # handshake did, and the bytes of the connections that are gone (the open ones': sessions())
        self.counts: Counter[str] = Counter()

    # -- handlers -----------------------------------------------------------------------------

    def on_request(self, kind: str, handler: RequestHandler) -> None:
        """``await handler(peer_idurl, data) -> reply`` serves ``kind`` requests; raise
        :class:`P2PError` to answer with an error the requester sees."""
        self._request_handlers[kind] = handler

    def on_event(self, kind: str, handler: EventHandler) -> None:
        """``handler(peer_idurl, data)`` takes ``kind`` events (synchronously)."""
        self._event_handlers[kind] = handler

    def on_stream(self, kind: str, handler: StreamHandler) -> None:
        """``await handler(peer_idurl, stream)`` reads ``kind`` streams."""
        self._stream_handlers[kind] = handler

    # -- listening ----------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._incoming, host, port)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None and self.server.sockets
        return normalize_addr(self.server.sockets[0].getsockname())

    def _incoming(self) -> asyncio.Protocol:
        local = self.local()
        if local is None:
            return _Refused()
        session = Session(
            initiator=False,
            local=local,
            now=asyncio.get_running_loop().time(),
            timeouts=self.limits.timeouts,
        )
        return Connection(self, session, outgoing=False)

    def _admit(self, connection: Connection) -> bool:
        if len(self._connections) >= self.limits.max_sessions:
            _peer_log.warning("p2p: %d sessions open: refusing more", len(self._connections))
            return False
        host = connection.address[0]
        if connection.routed:  # through a router, whose own limits hold per routed node
            return True
        same = sum(
            1 for c in self._connections if not (c.outgoing or c.routed) and c.address[0] == host
        )
        if same >= self.limits.sessions_per_address:
            _peer_log.warning("p2p: %s has %d sessions open: refusing more", host, same)
            return False
        return True

    # -- sessions -----------------------------------------------------------------------------

    async def connect(self, idurl: str) -> Connection:
        """An established session with ``idurl``: an open one, or a new one through the
        contacts of its identity (fetched again once when they all fail)."""
        try:
            peer = await self.directory.primary(idurl)
        except PeerUnknown as exc:
            raise PeerUnreachable(str(exc)) from None
        connection = self.established(peer.idurl)
        if connection is not None:
            return connection
        task = self._dialing.get(peer.idurl)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(peer.idurl))
            self._dialing[peer.idurl] = task
            task.add_done_callback(lambda _: self._dialing.pop(peer.idurl, None))
        return await asyncio.shield(task)

    def established(self, idurl: str) -> Connection | None:
        """An open session with ``idurl``, never a new one (a router must not dial a routed
        node: its contact is the router itself)."""
        for connection in self._by_peer.get(idurl, ()):
            if connection.session.established:
                return connection
        return None

    async def _dial(self, idurl: str) -> Connection:
        failures: list[str] = []
        for attempt in range(2):
            if attempt:
                self.directory.forget(idurl)
            try:
                peer = await self.directory.peer(idurl)
            except PeerUnknown as exc:
                failures.append(str(exc))
                break
            contacts = peer.tcp_contacts()
            if not contacts:
                failures.append("its identity lists no tcp:// contact")
            for host, port, route in contacts:
                relay = Preamble(Kind.CONNECT, route).encode() if route else b""
                try:
                    return await self._dial_contact(peer.idurl, host, port, relay)
                except (OSError, TimeoutError, P2PError) as exc:
                    where = f"tcp://{host}:{port}" + (f"/{route}" if route else "")
                    failures.append(f"{where}: {_why(exc)}")
        raise PeerUnreachable(f"cannot reach {idurl}: " + "; ".join(dict.fromkeys(failures)))

    async def _dial_contact(
        self, idurl: str, host: str, port: int, relay: bytes = b""
    ) -> Connection:
        if len(self._connections) >= self.limits.max_sessions:
            raise P2PError(f"{len(self._connections)} sessions are open already")
        local = self.local()
        if local is None:
            raise P2PError(NO_IDENTITY)
        loop = asyncio.get_running_loop()
        try:
            address = await self.resolve(host)
        except Exception as exc:  # the node's resolver says why in its own error types
            raise P2PError(str(exc) or f"cannot resolve {host}") from None
        session = Session(
            initiator=True,
            local=local,
            now=loop.time(),
            expected_idurl=idurl,
            timeouts=self.limits.timeouts,
        )
        async with asyncio.timeout(self.limits.connect_timeout):
            _, connection = await loop.create_connection(
                lambda: Connection(self, session, outgoing=True, preamble=relay), address, port
            )
            try:
                await connection.established
            except BaseException:
                connection.close()
                raise
        return connection

    async def accept_relayed(self, host: str, port: int, token: str) -> None:
        """Take a connection a peer made to this node through the router at host:port (the
        router announced it under ``token``): this node dials out, then answers the peer's
        handshake as if the peer had dialled it, so a node with no listener is reachable."""
        local = self.local()
        if local is None:
            raise P2PError(NO_IDENTITY)
        loop = asyncio.get_running_loop()
        address = await self.resolve(host)
        session = Session(
            initiator=False, local=local, now=loop.time(), timeouts=self.limits.timeouts
        )
        accept = Preamble(Kind.ACCEPT, token).encode()
        async with asyncio.timeout(self.limits.connect_timeout):
            await loop.create_connection(
                lambda: Connection(self, session, outgoing=False, preamble=accept), address, port
            )

    async def request(
        self,
        idurl: str,
        kind: str,
        data: bytes,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> bytes:
        """Send a ``kind`` request to ``idurl`` and return its answer.

        An ``idempotent`` request whose connection is lost before the answer is sent again
        over a new session within ``timeout``: a routed peer whose router died is reachable
        again once it has moved to another router and republished its contact.

        Raises :class:`PeerUnreachable`, :class:`RequestRefused` (the peer's error),
        :class:`SessionEnded` or :class:`P2PError` (no answer in time)."""
        timeout = timeout or self.limits.request_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                connection = await self.connect(idurl)
                return await connection.request(kind, data, deadline - loop.time())
            except (SessionEnded, PeerUnreachable) as exc:
                lost = isinstance(exc, PeerUnreachable) or exc.reason in CONNECTION_ENDED
                if not (idempotent and lost) or loop.time() + RETRY_PAUSE >= deadline:
                    raise
                await asyncio.sleep(RETRY_PAUSE)

    async def send_event(self, idurl: str, kind: str, data: bytes) -> None:
        connection = await self.connect(idurl)
        connection.session.send_event(kind, data)
        connection.pump()

    async def open_stream(self, idurl: str, kind: str, header: bytes = b"") -> OutgoingStream:
        connection = await self.connect(idurl)
        return await connection.open_stream(kind, header)

    def _register(self, connection: Connection) -> None:
        assert connection.peer is not None
        self._by_peer.setdefault(connection.peer, []).append(connection)

    def _unregister(self, connection: Connection) -> None:
        peers = self._by_peer.get(connection.peer or "", [])
        if connection in peers:
            peers.remove(connection)
            if not peers:
                del self._by_peer[connection.peer or ""]

    def _deliver_event(self, peer: str | None, kind: str, data: bytes) -> None:
        handler = self._event_handlers.get(kind)
        if handler is None or peer is None:
            _peer_log.info("p2p: %s sent a %r event nobody takes", peer, kind)
            return
        try:
            handler(peer, data)
        except Exception:
            log.exception("p2p: handler of %r events failed", kind)

    def sessions(self) -> list[dict[str, Any]]:
        return [connection.info() for connection in self._connections]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._dialing.values()):
            task.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)


class _Refused(asyncio.Protocol):
    """An incoming connection while this node has no identity to answer with."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


def _settle(future: asyncio.Future[Any] | None, outcome: Any) -> None:
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no session in time"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
