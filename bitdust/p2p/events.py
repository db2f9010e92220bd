"""What a session core reports to its shell: small frozen dataclasses (h11's events), and the
typed reasons a session ends for."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CloseReason(enum.StrEnum):
    """Why a session ended; the value is what logs and ``network/connected`` show."""

    LOCAL = "closed by this node"
    PEER = "closed by the peer"
    IDLE = "idle"
    CONNECTION_LOST = "connection lost"
    TRUNCATED = "connection ended inside a message"
    HANDSHAKE_TIMEOUT = "handshake did not finish in time"
    HANDSHAKE_FAILED = "handshake failed"
    UNKNOWN_PEER = "peer identity could not be fetched"
    WRONG_PEER = "peer is not the identity that was dialled"
    BAD_SIGNATURE = "peer's key does not match its identity"
    STALE_REVISION = "peer presented an older identity revision"
    DECRYPT_FAILED = "message failed authentication (tampered, replayed or reordered)"
    MALFORMED = "malformed frame"
    PROTOCOL = "protocol violation"
    FLOW_CONTROL = "peer sent beyond its credit"
    INPUT_LIMIT = "peer sent more than the session buffers"


@dataclass(frozen=True, slots=True)
class PeerIdentityNeeded:
    """The peer says it is ``idurl`` at ``revision``: the shell answers with
    ``Session.peer_identity`` (the identity document it has, refetched if older than
    ``revision``, or None when it cannot be fetched)."""

    idurl: str
    revision: int


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake finished and the peer proved it holds ``idurl``'s identity key."""

    idurl: str
    revision: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    request_id: int
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The peer answered a request with an error (``reason`` is its text)."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class EventReceived:
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened stream ``stream_id`` towards us; ``header`` says what it carries."""

    stream_id: int
    kind: str
    header: bytes


@dataclass(frozen=True, slots=True)
class StreamData:
    """A chunk of an incoming stream (a view of the record it came in, decrypted: not copied).
    It counts against the stream's credit until the application calls
    ``Session.stream_consumed``."""

    stream_id: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The sender of an incoming stream wrote everything."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The sender of an incoming stream gave up before its end."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class StreamWritable:
    """An outgoing stream that ran out of credit got more."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer is done with one of our streams: it read everything (``reason`` empty) or
    refused the rest (``reason`` says why)."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    reason: CloseReason
    detail: str = ""


Event = (
    PeerIdentityNeeded
    | Established
    | RequestReceived
    | ResponseReceived
    | RequestFailed
    | EventReceived
    | StreamOpened
    | StreamData
    | StreamEnded
    | StreamReset
    | StreamWritable
    | StreamClosed
    | SessionClosed
)
