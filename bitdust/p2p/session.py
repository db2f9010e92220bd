"""One p2p session as a sans-IO state machine (shaped like aioquic's connection).

Inputs: ``receive_data(bytes, now)``, ``connection_lost(now)``, ``handle_timer(now)``, the
shell's answer ``peer_identity(identity, now)`` and the application's calls (requests, events,
streams, ``close``). Outputs: ``data_to_send()``, ``get_timer()`` and ``next_event()``.

The record layer is Noise's: each record is a 2-byte big-endian length and one Noise message
(handshake message, then transport messages of at most 65,535 bytes), each transport message one
msgpack frame (:mod:`bitdust.p2p.wire`) or, after a STREAM_DATA frame, as many bytes of that
stream's data as it announced, unframed: the sender encrypts them straight from the
application's buffer and the receiver hands on the plaintext as it is. Noise's nonces make a
replayed, reordered or altered record fail authentication, and anything wrong — a failed
record, a malformed frame, a broken rule, credit overrun, a stalled handshake — ends the session
with a :class:`CloseReason` and delivers nothing more. Nothing is delivered before the peer's
identity is verified. Bounded: the input held while the shell fetches an identity, requests and
streams in flight per direction, and each stream's unread bytes (one credit window).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from noise.connection import NoiseConnection
from noise.constants import MAX_NONCE
from noise.exceptions import NoiseMaxNonceError
from noise.state import CipherState

from bitdust.p2p.errors import PeerBusy, SessionEnded
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
from bitdust.p2p.handshake import Handshake, HandshakeRefused, LocalPeer, PeerIdentity
from bitdust.p2p.streams import MAX_STREAMS, ReceivingStream, SendingStream
from bitdust.p2p.wire import (
    MAX_PAYLOAD,
    MAX_PLAINTEXT,
    Frame,
    FrameType,
    MalformedFrame,
    decode_frame,
    encode_frame,
)

LENGTH_SIZE = 2
#: Requests awaiting an answer, per direction (a protocol constant both ends keep).
MAX_PENDING_REQUESTS = 32
#: Input kept unprocessed while the shell fetches the peer's identity (the shell also stops
#: reading meanwhile; this bounds what was already on its way).
MAX_HELD_INPUT = 1024 * 1024


class TransportCipher:
    """Noise's transport messages of one session, sealed and opened by ``cryptography``'s AESGCM
    with the keys and nonces of the session's Noise cipher states (which stay current, so
    noiseprotocol's own ``encrypt``/``decrypt`` could take over at any message).

    The same bytes as noiseprotocol's (AESGCM, nonce = 4 zero bytes and the 64-bit counter
    big-endian, no associated data), without its per-message checks and copies: a message is
    sealed straight from the buffer it is given, and opened straight from a view of the bytes
    received."""

    _NONCE = struct.Struct(">4xQ")

    def __init__(self, noise: NoiseConnection) -> None:
        protocol = noise.noise_protocol
        assert protocol.name.endswith(b"_AESGCM_SHA256"), protocol.name
        self._seal_state = protocol.cipher_state_encrypt
        self._open_state = protocol.cipher_state_decrypt
        self._seal = AESGCM(self._seal_state.k)
        self._open = AESGCM(self._open_state.k)

    def encrypt(self, plaintext: bytes | memoryview) -> bytes:
        state = self._seal_state
        message = self._seal.encrypt(self._nonce(state), plaintext, None)
        state.n += 1
        return message

    def decrypt(self, message: bytes | bytearray | memoryview) -> bytes:
        """Raises ``cryptography``'s InvalidTag for a message that fails (one shorter than its
        tag fails too)."""
        state = self._open_state
        plaintext = self._open.decrypt(self._nonce(state), message, None)
        state.n += 1
        return plaintext

    @classmethod
    def _nonce(cls, state: CipherState) -> bytes:
        """The nonce of ``state``'s next message."""
        if state.n >= MAX_NONCE:
            raise NoiseMaxNonceError("Nonce has depleted!")
        return cls._NONCE.pack(state.n)


@dataclass(frozen=True)
class SessionTimeouts:
    handshake: float = 10.0  # from the first byte to a verified peer, identity fetch included
    idle: float = 300.0  # nothing heard from the peer for this long ends the session


class Session:
    """One side of a session. ``expected_idurl``: the identity an initiator dialled."""

    def __init__(
        self,
        *,
        initiator: bool,
        local: LocalPeer,
        now: float,
        expected_idurl: str | None = None,
        timeouts: SessionTimeouts = SessionTimeouts(),
    ) -> None:
        self.initiator = initiator
        self.timeouts = timeouts
        self.handshake = Handshake(initiator, local, expected_idurl)
        self.peer_idurl: str | None = None
        self.closed: SessionClosed | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._input = bytearray()
        self._output: list[bytes] = []
        self._cipher: TransportCipher | None = None  # once the handshake is done
        self._events: deque[Event] = deque()
        self._handshake_deadline = now + timeouts.handshake
        self._last_activity = now
        # requests: ids we issued and await, ids the peer issued and we owe an answer
        self._next_request = 1
        self._awaited: set[int] = set()
        self._owed: set[int] = set()
        self._last_peer_request = 0
        # streams: odd ids are the initiator's, even the responder's; never reused
        self._next_stream = 1 if initiator else 2
        self._last_peer_stream = 0
        self._sending: dict[int, SendingStream] = {}
        self._receiving: dict[int, ReceivingStream] = {}
        # the stream whose data the next records are, and how many bytes of it are still owed
        self._data_stream = 0
        self._data_left = 0
        if initiator:
            self._send_record(self.handshake.start())

    # -- outputs --------------------------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.handshake.done and self.closed is None

    @property
    def awaiting_identity(self) -> bool:
        """The shell is fetching the peer's identity: it should stop reading meanwhile."""
        return self.handshake.awaiting_identity and self.closed is None

    def records_to_send(self) -> list[bytes]:
        """What to send, each record's length and message as two pieces (a shell writes them
        with ``writelines``: no copy)."""
        records, self._output = self._output, []
        return records

    def data_to_send(self) -> bytes:
        return b"".join(self.records_to_send())

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.closed is not None:
            return None
        if not self.handshake.done:
            return self._handshake_deadline
        return self._last_activity + self.timeouts.idle

    def unread_bytes(self) -> int:
        """What the application was given and has not consumed (bounded by the windows)."""
        return sum(stream.unread for stream in self._receiving.values())

    # -- inputs ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview, now: float) -> None:
        """Bytes from the peer. ``data`` is read during the call only (a shell may pass a view
        of a buffer it reuses): what is kept of it, a record's beginning, is copied."""
        if self.closed is not None:
            return
        self.bytes_in += len(data)
        with memoryview(data) as view:  # records are read straight from the piece
            used = 0
            if self._input:  # a record began in an earlier piece: complete it, handle it
                used = self._complete_held(view)
                self._process(now)
            if not self._input:
                used += self._read_records(view[used:], now)
            if self.closed is None:
                self._input += view[used:]  # a record's beginning, for the next piece
        self._check_held()

    def connection_lost(self, now: float) -> None:
        if self.closed is None:
            reason = CloseReason.TRUNCATED if self._input else CloseReason.CONNECTION_LOST
            self._end(reason, send=False)

    def handle_timer(self, now: float) -> None:
        if self.closed is not None:
            return
        if not self.handshake.done:
            if now >= self._handshake_deadline:
                self._end(CloseReason.HANDSHAKE_TIMEOUT, send=False)
        elif now >= self._last_activity + self.timeouts.idle:
            self.close(CloseReason.IDLE)

    def peer_identity(self, identity: PeerIdentity | None, now: float) -> None:
        """The shell's answer to :class:`PeerIdentityNeeded`."""
        if not self.awaiting_identity:
            return
        try:
            last = self.handshake.verify(identity)
        except HandshakeRefused as exc:
            self._end(exc.reason, exc.detail, send=False)
            return
        self._cipher = TransportCipher(self.handshake.noise)
        if last:
            self._send_record(last)
        claim = self.handshake.claim
        assert claim is not None
        self.peer_idurl = claim.idurl
        self._last_activity = now
        self._events.append(Established(claim.idurl, claim.revision))
        self._process(now)

    # -- the application's calls ----------------------------------------------------------------

    def send_request(self, kind: str, data: bytes) -> int:
        """Send a request; its answer comes as ResponseReceived or RequestFailed with the id."""
        self._require_open()
        if len(self._awaited) >= MAX_PENDING_REQUESTS:
            raise PeerBusy(f"{MAX_PENDING_REQUESTS} requests to {self.peer_idurl} await answers")
        _check_size(data)
        request_id = self._next_request
        self._send_frame(Frame(FrameType.REQUEST, ident=request_id, kind=kind, data=data))
        self._next_request += 1
        self._awaited.add(request_id)
        return request_id

    def send_response(self, request_id: int, data: bytes) -> None:
        self._answer(Frame(FrameType.RESPONSE, ident=request_id, data=data))

    def send_request_error(self, request_id: int, reason: str) -> None:
        self._answer(Frame(FrameType.REQUEST_ERROR, ident=request_id, reason=reason[:200]))

    def send_event(self, kind: str, data: bytes) -> None:
        self._require_open()
        _check_size(data)
        self._send_frame(Frame(FrameType.EVENT, kind=kind, data=data))

    def open_stream(self, kind: str, header: bytes = b"") -> int:
        self._require_open()
        if len(self._sending) >= MAX_STREAMS:
            raise PeerBusy(f"{MAX_STREAMS} streams to {self.peer_idurl} are open")
        _check_size(header)
        stream_id = self._next_stream
        self._send_frame(Frame(FrameType.STREAM_OPEN, ident=stream_id, kind=kind, data=header))
        self._next_stream += 2
        self._sending[stream_id] = SendingStream(stream_id)
        return stream_id

    def stream_send(self, stream_id: int, data: bytes) -> int:
        """Send what the peer's credit allows of ``data``; returns how many bytes went. When
        fewer than offered, wait for StreamWritable before sending the rest."""
        self._require_open()
        stream = self._sending_stream(stream_id)
        if stream.ended:
            raise ValueError(f"stream {stream_id} was ended")
        allowed = stream.take(len(data))
        if allowed:
            self._send_frame(Frame(FrameType.STREAM_DATA, ident=stream_id, size=allowed))
            view = memoryview(data)[:allowed]
            encrypt = self._transport_cipher().encrypt
            for start in range(0, allowed, MAX_PLAINTEXT):
                self._send_record(encrypt(view[start : start + MAX_PLAINTEXT]))
        return allowed

    def stream_end(self, stream_id: int) -> None:
        """Everything was sent; StreamClosed follows once the peer read it all and its
        application accepted it (``stream_done``), or with the reason it refused it."""
        self._require_open()
        stream = self._sending_stream(stream_id)
        if not stream.ended:
            stream.ended = True
            self._send_frame(Frame(FrameType.STREAM_END, ident=stream_id))

    def stream_reset(self, stream_id: int, reason: str) -> None:
        """Give up sending on one of our streams."""
        self._require_open()
        if self._sending.pop(stream_id, None) is not None:
            self._send_frame(Frame(FrameType.STREAM_RESET, ident=stream_id, reason=reason[:200]))

    def stream_consumed(self, stream_id: int, size: int) -> bool:
        """The application used ``size`` bytes of an incoming stream: grant credit. True when
        that queued a credit frame to send (most calls queue nothing)."""
        stream = self._receiving.get(stream_id)
        if stream is None or self.closed is not None:
            return False
        limit = stream.consume(size)
        if limit is None:
            return False
        self._send_frame(Frame(FrameType.STREAM_CREDIT, ident=stream_id, limit=limit))
        return True

    def stream_done(self, stream_id: int) -> None:
        """The application read an incoming stream to its end and acted on it (a supplier
        kept the fragment): only now does the sender learn it succeeded. A stream that is not
        read to its end yet is refused instead."""
        stream = self._receiving.get(stream_id)
        if stream is None or self.closed is not None:
            return
        if not stream.drained:
            self.stream_refuse(stream_id, "the receiving service stopped reading")
            return
        del self._receiving[stream_id]
        self._send_frame(Frame(FrameType.STREAM_CLOSE, ident=stream_id, reason=""))

    def stream_refuse(self, stream_id: int, reason: str) -> None:
        """Stop reading an incoming stream (the sender gets StreamClosed with ``reason``)."""
        if self._receiving.pop(stream_id, None) is not None and self.closed is None:
            reason = reason[:200] or "refused"
            self._send_frame(Frame(FrameType.STREAM_CLOSE, ident=stream_id, reason=reason))

    def close(self, reason: CloseReason = CloseReason.LOCAL, detail: str = "") -> None:
        """End the session, telling the peer why when the handshake is done."""
        if self.closed is None:
            self._end(reason, detail, send=self.handshake.done)

    # -- records --------------------------------------------------------------------------------

    def _process(self, now: float) -> None:
        """Handle the records the input holds (a piece that completed one, or what arrived
        while the peer's identity was fetched)."""
        held = self._input
        with memoryview(held) as view:
            used = self._read_records(view, now)
        del held[:used]  # when ``_end`` replaced the input meanwhile, this trims the old one
        self._check_held()

    def _complete_held(self, view: memoryview) -> int:
        """Move from ``view`` to the held input what completes the record it begins (all of
        ``view`` while the peer's identity is awaited); returns how many bytes moved."""
        held = self._input
        if self.handshake.awaiting_identity:
            held += view
            return len(view)
        moved = min(max(0, LENGTH_SIZE - len(held)), len(view))
        held += view[:moved]
        if len(held) >= LENGTH_SIZE:
            missing = LENGTH_SIZE + int.from_bytes(held[:LENGTH_SIZE], "big") - len(held)
            more = min(missing, len(view) - moved)
            held += view[moved : moved + more]
            moved += more
        return moved

    def _read_records(self, view: memoryview, now: float) -> int:
        """Handle the whole records at the start of ``view``; returns the bytes they took."""
        start = 0
        size = len(view)
        # once the cipher exists the handshake is over: no identity is awaited any more
        while self.closed is None and (
            self._cipher is not None or not self.handshake.awaiting_identity
        ):
            if size - start < LENGTH_SIZE:
                break
            end = start + LENGTH_SIZE + (view[start] << 8 | view[start + 1])
            if size < end:
                break
            message = view[start + LENGTH_SIZE : end]
            start = end
            if self._cipher is not None:
                self._receive_transport(message, now)
            else:
                self._receive_handshake(bytes(message))
        return start

    def _check_held(self) -> None:
        if self.closed is None and len(self._input) > MAX_HELD_INPUT:
            self._end(CloseReason.INPUT_LIMIT, send=False)

    def _receive_handshake(self, message: bytes) -> None:
        try:
            reply, claim = self.handshake.read(message)
        except HandshakeRefused as exc:
            self._end(exc.reason, exc.detail, send=False)
            return
        if reply:
            self._send_record(reply)
        if claim is not None:
            self._events.append(PeerIdentityNeeded(claim.idurl, claim.revision))

    def _receive_transport(self, message: memoryview, now: float) -> None:
        assert self._cipher is not None
        try:
            plaintext = self._cipher.decrypt(message)
        except Exception:  # InvalidTag, a record shorter than its tag, the nonces ran out
            self._end(CloseReason.DECRYPT_FAILED, send=False)
            return
        self._last_activity = now
        if self._data_left:
            self._receive_stream_data(plaintext)
            return
        try:
            frame = decode_frame(plaintext)
        except MalformedFrame as exc:
            self._end(CloseReason.MALFORMED, str(exc))
            return
        self._dispatch(frame)

    def _receive_stream_data(self, data: bytes) -> None:
        """A record of the data the last STREAM_DATA frame announced (the frame took its
        credit)."""
        if not 0 < len(data) <= self._data_left:
            self._end(CloseReason.PROTOCOL, "STREAM_DATA: more data than the frame announced")
            return
        self._data_left -= len(data)
        if self._data_stream in self._receiving:  # else we refused it: in flight, dropped
            self._events.append(StreamData(self._data_stream, memoryview(data)))

    def _send_frame(self, frame: Frame) -> None:
        self._send_record(self._transport_cipher().encrypt(encode_frame(frame)))

    def _send_record(self, message: bytes) -> None:
        self.bytes_out += LENGTH_SIZE + len(message)
        self._output += (len(message).to_bytes(LENGTH_SIZE, "big"), message)

    def _transport_cipher(self) -> TransportCipher:
        assert self._cipher is not None, "transport messages before the handshake is done"
        return self._cipher

    # -- frames ---------------------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        handler = _HANDLERS[frame.type]
        violation = handler(self, frame)
        if violation:
            reason = CloseReason.FLOW_CONTROL if violation is _OVERRUN else CloseReason.PROTOCOL
            self._end(reason, f"{frame.type.name}: {violation}")

    def _on_request(self, frame: Frame) -> str:
        if frame.ident <= self._last_peer_request:
            return "request id reused"
        if len(self._owed) >= MAX_PENDING_REQUESTS:
            return f"more than {MAX_PENDING_REQUESTS} requests await answers"
        self._last_peer_request = frame.ident
        self._owed.add(frame.ident)
        self._events.append(RequestReceived(frame.ident, frame.kind, frame.data))
        return ""

    def _on_answer(self, frame: Frame) -> str:
        if frame.ident not in self._awaited:
            return "answer to no pending request"
        self._awaited.discard(frame.ident)
        if frame.type is FrameType.RESPONSE:
            self._events.append(ResponseReceived(frame.ident, frame.data))
        else:
            self._events.append(RequestFailed(frame.ident, frame.reason))
        return ""

    def _on_event(self, frame: Frame) -> str:
        self._events.append(EventReceived(frame.kind, frame.data))
        return ""

    def _on_stream_open(self, frame: Frame) -> str:
        if frame.ident % 2 != (0 if self.initiator else 1) or frame.ident <= self._last_peer_stream:
            return "stream id not the peer's next"
        if len(self._receiving) >= MAX_STREAMS:
            return f"more than {MAX_STREAMS} streams"
        self._last_peer_stream = frame.ident
        self._receiving[frame.ident] = ReceivingStream(frame.ident)
        self._events.append(StreamOpened(frame.ident, frame.kind, frame.data))
        return ""

    def _incoming(self, frame: Frame) -> ReceivingStream | str | None:
        """The peer's open stream, None for one we stopped reading, or the violation."""
        stream = self._receiving.get(frame.ident)
        if stream is not None:
            return "data after the end" if stream.ended else stream
        peers = frame.ident % 2 == (0 if self.initiator else 1)
        if not peers or frame.ident > self._last_peer_stream:
            return "stream never opened"
        return None

    def _on_stream_data(self, frame: Frame) -> str:
        stream = self._incoming(frame)
        if isinstance(stream, str):
            return stream
        if stream is not None and not stream.accept(frame.size):
            return _OVERRUN
        self._data_stream, self._data_left = frame.ident, frame.size
        return ""

    def _on_stream_end(self, frame: Frame) -> str:
        stream = self._incoming(frame)
        if isinstance(stream, str):
            return stream
        if stream is not None:
            stream.ended = True
            self._events.append(StreamEnded(frame.ident))
        return ""

    def _on_stream_reset(self, frame: Frame) -> str:
        stream = self._incoming(frame)
        if isinstance(stream, str):
            return stream
        if stream is not None:
            del self._receiving[frame.ident]
            self._events.append(StreamReset(frame.ident, frame.reason))
        return ""

    def _outgoing(self, frame: Frame) -> SendingStream | str | None:
        """Our open stream, None for one we already reset, or the violation."""
        stream = self._sending.get(frame.ident)
        if stream is not None:
            return stream
        ours = frame.ident % 2 == (1 if self.initiator else 0)
        if not ours or frame.ident >= self._next_stream:
            return "stream never opened"
        return None

    def _on_stream_credit(self, frame: Frame) -> str:
        stream = self._outgoing(frame)
        if isinstance(stream, str):
            return stream
        if stream is not None and stream.grant(frame.limit):
            self._events.append(StreamWritable(frame.ident))
        return ""

    def _on_stream_close(self, frame: Frame) -> str:
        stream = self._outgoing(frame)
        if isinstance(stream, str):
            return stream
        if stream is None:
            return ""
        if not frame.reason and not stream.ended:
            return "read to the end of a stream that has not ended"
        del self._sending[frame.ident]
        self._events.append(StreamClosed(frame.ident, frame.reason))
        return ""

    def _on_close(self, frame: Frame) -> str:
        self._end(CloseReason.PEER, frame.reason, send=False)
        return ""

    # -- helpers --------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.closed is not None:
            raise SessionEnded(self.closed.reason, self.closed.detail)
        if not self.handshake.done:
            raise SessionEnded(CloseReason.PROTOCOL, "the session is not established yet")

    def _answer(self, frame: Frame) -> None:
        self._require_open()
        _check_size(frame.data)
        if frame.ident not in self._owed:
            raise ValueError(f"request {frame.ident} is not awaiting an answer")
        self._owed.discard(frame.ident)
        self._send_frame(frame)

    def _sending_stream(self, stream_id: int) -> SendingStream:
        stream = self._sending.get(stream_id)
        if stream is None:
            raise SessionEnded(CloseReason.LOCAL, f"stream {stream_id} is closed")
        return stream

    def _end(self, reason: CloseReason, detail: str = "", *, send: bool = True) -> None:
        if send:
            self._send_frame(Frame(FrameType.CLOSE, reason=(detail or reason.value)[:200]))
        self.closed = SessionClosed(reason, detail)
        self._input = bytearray()  # not cleared: a record being read may still hold a view of it
        self._receiving.clear()
        self._sending.clear()
        self._events.append(self.closed)


_OVERRUN = "beyond the granted credit"


def _check_size(data: bytes) -> None:
    if len(data) > MAX_PAYLOAD:
        raise ValueError(
            f"{len(data)} bytes do not fit one frame (at most {MAX_PAYLOAD}): use a stream"
        )


_HANDLERS = {
    FrameType.REQUEST: Session._on_request,
    FrameType.RESPONSE: Session._on_answer,
    FrameType.REQUEST_ERROR: Session._on_answer,
    FrameType.EVENT: Session._on_event,
    FrameType.STREAM_OPEN: Session._on_stream_open,
    FrameType.STREAM_DATA: Session._on_stream_data,
    FrameType.STREAM_END: Session._on_stream_end,
    FrameType.STREAM_RESET: Session._on_stream_reset,
    FrameType.STREAM_CREDIT: Session._on_stream_credit,
    FrameType.STREAM_CLOSE: Session._on_stream_close,
    FrameType.CLOSE: Session._on_close,
}
