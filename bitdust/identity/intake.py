"""Wire protocol of the identity server's TCP intake, as sans-IO cores (no sockets here).

One identity per connection. The client sends a header line then the document::

    IDENTITY <length>\\n<length bytes of identity XML>

``<length>`` is decimal without leading zeros, at most the server's size limit. The server answers
one line and closes::

    OK <idurl>\\n            the identity is stored (or touched); <idurl> is its URL on this server
    ERROR <reason>\\n        refused or malformed; <reason> is one line of printable ASCII

:class:`IntakeConnection` is the server side: feed it bytes with :meth:`receive_data` (``b""`` for
end of stream) and read events with :meth:`next_event` — :class:`NeedData`,
:class:`IdentityReceived` or :class:`ProtocolError`. Its states and transitions are the table
``_TRANSITIONS``. :func:`encode_request`, :func:`format_reply` and :func:`parse_reply` are the
rest of the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from bitdust.identity.document import MAX_DOCUMENT_SIZE

HEADER_PREFIX = b"IDENTITY "
MAX_HEADER_LENGTH = 32
MAX_REPLY_LENGTH = 1024
MAX_REASON_LENGTH = 400
_LENGTH_RE = re.compile(rb"[1-9][0-9]{0,8}")


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedData:
    """More bytes are needed."""


@dataclass(frozen=True, slots=True)
class IdentityReceived:
    """A complete identity document arrived."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the framing; reply ``ERROR <reason>`` and close."""

    reason: str


Event = NeedData | IdentityReceived | ProtocolError


@dataclass(frozen=True, slots=True)
class _HeaderReceived:
    """Internal: the header line is read; the body of ``length`` bytes follows."""

    length: int


class State(Enum):
    HEADER = "header"
    BODY = "body"
    DONE = "done"
    FAILED = "failed"


# Every transition of a connection: the event types each state may produce, and the state each
# leads to. This table is the only place the state changes.
_TRANSITIONS: dict[State, dict[type, State]] = {
    State.HEADER: {
        NeedData: State.HEADER,
        _HeaderReceived: State.BODY,
        ProtocolError: State.FAILED,
    },
    State.BODY: {NeedData: State.BODY, IdentityReceived: State.DONE, ProtocolError: State.FAILED},
    State.DONE: {},
    State.FAILED: {},
}


class IntakeConnection:
    """Server side of one intake connection."""

    def __init__(self, max_size: int = MAX_DOCUMENT_SIZE) -> None:
        self.max_size = max_size
        self.state = State.HEADER
        self._buffer = bytearray()
        self._expected = 0
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self.state in (State.DONE, State.FAILED):
            return  # the verdict is given; anything further is ignored
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_event(self) -> Event:
        """The next event; after :class:`IdentityReceived` or :class:`ProtocolError`, the same
        event is not repeated: :class:`ProtocolError` for anything further."""
        while True:
            if not _TRANSITIONS[self.state]:
                return ProtocolError("connection already finished")
            event = self._header() if self.state is State.HEADER else self._body()
            self._move(event)
            if not isinstance(event, _HeaderReceived):
                return event

    def _move(self, event: Event | _HeaderReceived) -> None:
        allowed = _TRANSITIONS[self.state]
        if type(event) not in allowed:  # pragma: no cover - a programming error, not input
            raise RuntimeError(f"no transition from {self.state} on {type(event).__name__}")
        self.state = allowed[type(event)]

    def _header(self) -> Event | _HeaderReceived:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            if len(self._buffer) > MAX_HEADER_LENGTH:
                return ProtocolError("expected a header line 'IDENTITY <length>'")
            if self._eof:
                return ProtocolError("connection closed before the header line")
            return NeedData()
        line = bytes(self._buffer[:newline])
        if newline > MAX_HEADER_LENGTH or not line.startswith(HEADER_PREFIX):
            return ProtocolError("expected a header line 'IDENTITY <length>'")
        length_text = line[len(HEADER_PREFIX) :]
        if not _LENGTH_RE.fullmatch(length_text):
            return ProtocolError("the header's length is not a positive decimal number")
        length = int(length_text)
        if length > self.max_size:
            return ProtocolError(
                f"identity is {length} bytes; this server accepts at most {self.max_size}"
            )
        del self._buffer[: newline + 1]
        self._expected = length
        return _HeaderReceived(length)

    def _body(self) -> Event:
        if len(self._buffer) < self._expected:
            if self._eof:
                return ProtocolError("connection closed before the whole identity arrived")
            return NeedData()
        if len(self._buffer) > self._expected:
            return ProtocolError("unexpected data after the identity")
        data = bytes(self._buffer)
        self._buffer.clear()
        return IdentityReceived(data)


def encode_request(xml: bytes) -> bytes:
    """The bytes a client sends to submit ``xml``."""
    return HEADER_PREFIX + str(len(xml)).encode("ascii") + b"\n" + xml


def format_reply(ok: bool, text: str) -> bytes:
    """``OK <idurl>\\n`` or ``ERROR <reason>\\n`` with ``text`` made one printable line."""
    return (b"OK " if ok else b"ERROR ") + sanitize_line(text).encode("ascii") + b"\n"


def parse_reply(line: bytes) -> tuple[bool, str]:
    """Parse a server reply line into ``(ok, idurl_or_reason)``; raises ``ValueError`` when it is
    not a reply."""
    if len(line) > MAX_REPLY_LENGTH or not line.endswith(b"\n"):
        raise ValueError("the identity server sent no complete reply line")
    text = line[:-1].rstrip(b"\r").decode("ascii", errors="replace")
    if text.startswith("OK "):
        return True, sanitize_line(text[3:])
    if text.startswith("ERROR "):
        return False, sanitize_line(text[6:])
    raise ValueError("the identity server's reply is neither 'OK ...' nor 'ERROR ...'")


def sanitize_line(text: str) -> str:
    """One line of printable ASCII, at most :data:`MAX_REASON_LENGTH` characters."""
    clean = "".join(ch if " " <= ch <= "~" else " " for ch in text).strip()
    if len(clean) > MAX_REASON_LENGTH:
        clean = clean[: MAX_REASON_LENGTH - 3] + "..."
    return clean or "-"
