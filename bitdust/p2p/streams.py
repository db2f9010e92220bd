"""Credit-based flow control of one stream, as HTTP/2's WINDOW_UPDATE and QUIC's
MAX_STREAM_DATA do it.

Streams are one-way. The receiver grants the sender an absolute offset it may send up to
(``limit``); it starts at :data:`STREAM_WINDOW`, and the receiver moves it to
:data:`RECEIVE_WINDOW` past what its application consumed, so what a receiver holds unread never
exceeds that. A sender that goes past its limit breaks the protocol and the session ends. Limits
are absolute offsets, so a credit frame can be repeated or merged without harm.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The credit every stream starts with: a protocol constant both ends keep.
STREAM_WINDOW = 1024 * 1024
#: How far past what its application consumed a receiver lets the sender go (also what it may
#: hold unread): its own choice, granted with its first credit frame. A sender at most one
#: initial window ahead stopped for credit every 512 KiB and spent its time waking up: 4 MiB took
#: a stream on 2 cores from about 1.3 to 1.9 GB/s and a fifth less CPU on each side.
RECEIVE_WINDOW = 4 * 1024 * 1024
#: Streams open at once in each direction of a session (a protocol constant, like the window).
MAX_STREAMS = 8


@dataclass(slots=True)
class SendingStream:
    """Our side of a stream we opened: how far we sent and how far we may send."""

    stream_id: int
    sent: int = 0
    limit: int = STREAM_WINDOW
    ended: bool = False
    blocked: bool = False

    @property
    def credit(self) -> int:
        return self.limit - self.sent

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` bytes may go out now; marks the stream blocked when none."""
        allowed = min(wanted, self.credit)
        self.sent += allowed
        self.blocked = allowed < wanted
        return allowed

    def grant(self, limit: int) -> bool:
        """The receiver moved the limit; True when a blocked stream may send again."""
        if limit <= self.limit:
            return False
        self.limit = limit
        unblocked, self.blocked = self.blocked, False
        return unblocked


@dataclass(slots=True)
class ReceivingStream:
    """Our side of a stream the peer opened: what arrived, what the application consumed and the
    limit granted to the sender."""

    stream_id: int
    received: int = 0
    consumed: int = 0
    limit: int = STREAM_WINDOW
    ended: bool = False

    @property
    def unread(self) -> int:
        return self.received - self.consumed

    @property
    def drained(self) -> bool:
        """The sender ended and the application consumed everything."""
        return self.ended and self.consumed == self.received

    def accept(self, size: int) -> bool:
        """Count ``size`` arriving bytes; False when they exceed the granted limit."""
        if self.received + size > self.limit:
            return False
        self.received += size
        return True

    def consume(self, size: int) -> int | None:
        """The application used ``size`` more bytes; the new limit to grant, or None when the
        sender still has at least half a window (credit goes out in few, large steps)."""
        self.consumed = min(self.received, self.consumed + size)
        if self.ended or self.limit - self.consumed >= RECEIVE_WINDOW // 2:
            return None
        self.limit = self.consumed + RECEIVE_WINDOW
        return self.limit
