"""Exceptions the p2p layer raises to the services that use it; each message says what happened
to which peer, in words a user can act on."""

from __future__ import annotations

from bitdust.p2p.events import CloseReason


class P2PError(Exception):
    """Base of the p2p layer's errors."""


class SessionEnded(P2PError):
    """The session ended (or never opened); ``reason`` says why."""

    def __init__(self, reason: CloseReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason


class PeerBusy(P2PError):
    """This node already has as many requests or streams in flight to the peer as the wire
    allows; retry when some finish."""


class RequestRefused(P2PError):
    """The peer answered the request with an error; the message is its reason."""


class PeerUnreachable(P2PError):
    """No session could be opened to the peer: its identity or every contact failed."""
