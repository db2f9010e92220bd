"""The router's relay as a sans-IO core: routes, pending connections, pairs and their limits.

Fed the shell's observations (a connection's preamble, bytes it forwarded, a socket that takes
no more or took some, a closed socket) and the time; hands back actions (tell a routed node
a peer is waiting, pair two sockets, pause or resume reading one, close one with a reason). It
never sees what the bytes mean: they are the peers' own Noise sessions, end to end.

Limits are per routed node (its *route*): relayed connections at once, bytes waiting in the
router's send buffers, bytes per second (a token bucket: a route over its rate is paused, not
dropped). A pair whose receiver takes nothing for ``stall_timeout`` is closed, and so is a pair
holding more than its route's buffer: one slow or hostile party costs its own pairs, nothing else.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field

from bitdust.p2p.preamble import Kind, Preamble


class DropReason(enum.StrEnum):
    BAD_PREAMBLE = "not a relay preamble"
    UNKNOWN_ROUTE = "no node is routed here under that route"
    TOO_MANY_STREAMS = "the routed node has as many relayed connections as it may"
    UNKNOWN_TOKEN = "no pending connection has that token"
    ACCEPT_TIMEOUT = "the routed node did not take the connection in time"
    STALLED = "the receiver stopped reading"
    OVER_BUFFER = "more bytes wait for the receiver than the route may buffer"
    ROUTE_CLOSED = "the routed node left the router"
    PARTNER_CLOSED = "the other side closed"


class RelayRefused(Exception):
    """A registration the router cannot take (the message says why)."""


@dataclass(frozen=True)
class RelayLimits:
    routes: int = 20  # services/proxy-server/routes-limit
    streams_per_route: int = 64
    buffered_per_route: int = 4 * 1024 * 1024
    bytes_per_second: float = 0.0  # per route; 0 = no limit
    burst_seconds: float = 1.0  # the bucket holds this many seconds of rate
    accept_timeout: float = 10.0
    stall_timeout: float = 30.0
    lease: float = 90.0  # a route not registered again within this long is dropped
    connections: int = 1000  # relayed sockets in all (the shell refuses more)
    connections_per_address: int = 128  # relayed sockets from one source IP


# -- actions the shell carries out ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell the routed node ``idurl`` (over its session) that a peer waits under ``token``."""

    idurl: str
    token: str


@dataclass(frozen=True, slots=True)
class Pair:
    """Forward bytes between ``peer`` and ``routed`` from now on."""

    peer: int
    routed: int


@dataclass(frozen=True, slots=True)
class Close:
    conn: int
    reason: DropReason


@dataclass(frozen=True, slots=True)
class Pause:
    conn: int


@dataclass(frozen=True, slots=True)
class Resume:
    conn: int


Action = Notify | Pair | Close | Pause | Resume


def route_id(idurl: str) -> str:
    """A routed node's route: stable across registrations, so its contact stays the same."""
    return hashlib.sha256(idurl.encode()).hexdigest()[:16]


@dataclass
class Route:
    idurl: str
    route: str
    conns: set[int] = field(default_factory=set)  # peer-side connections, pending or paired
    expires: float = 0.0
    tokens: float = 0.0
    refilled: float = 0.0
    bytes_relayed: int = 0
    dropped: int = 0
    buffered: int = 0  # in the send buffers of its relayed sockets


@dataclass
class _Side:
    route: str
    partner: int | None = None
    token: str | None = None  # while the peer waits for the routed node
    deadline: float | None = None
    blocked_since: float | None = None  # its send buffer is full
    buffered: int = 0
    paused_until: float | None = None


class Relay:
    def __init__(self, limits: RelayLimits = RelayLimits()) -> None:
        self.limits = limits
        self.routes: dict[str, Route] = {}
        self._sides: dict[int, _Side] = {}
        self._pending: dict[str, int] = {}  # token -> peer connection
        self._actions: deque[Action] = deque()
        self._timer: float | None = None
        self._timer_changed = False  # a deadline came, went or moved: get_timer looks again
        self.bytes_relayed = 0  # since the relay started, routes come and gone included
        self.closed_by_reason: Counter[DropReason] = Counter()

    # -- routes ---------------------------------------------------------------------------------

    def register(self, idurl: str, now: float) -> str:
        """Route for ``idurl`` (the IDURL its authenticated session proved) until the lease
        ends; registering again renews it. Returns the route id."""
        route = route_id(idurl)
        if route not in self.routes:
            if len(self.routes) >= self.limits.routes:
                raise RelayRefused(f"this router routes {len(self.routes)} nodes already")
            self.routes[route] = Route(idurl, route, tokens=self._burst, refilled=now)
        self.routes[route].expires = now + self.limits.lease
        self._timer_changed = True
        return route

    def unregister(self, idurl: str) -> None:
        route = self.routes.pop(route_id(idurl), None)
        self._timer_changed = True
        if route is not None:
            for conn in sorted(route.conns):
                self._drop(conn, DropReason.ROUTE_CLOSED)

    @property
    def _burst(self) -> float:
        return self.limits.bytes_per_second * self.limits.burst_seconds

    # -- connections ----------------------------------------------------------------------------

    def opened(self, conn: int, preamble: Preamble, now: float) -> None:
        """A connection to the router's port began with ``preamble``."""
        if preamble.kind is Kind.CONNECT:
            self._connect(conn, preamble.ident, now)
        else:
            self._accept(conn, preamble.ident)

    def _connect(self, conn: int, route_name: str, now: float) -> None:
        route = self.routes.get(route_name)
        if route is None:
            self._refuse(conn, DropReason.UNKNOWN_ROUTE)
            return
        if len(route.conns) >= self.limits.streams_per_route:
            route.dropped += 1
            self._refuse(conn, DropReason.TOO_MANY_STREAMS)
            return
        token = secrets.token_hex(16)
        self._sides[conn] = _Side(
            route_name, token=token, deadline=now + self.limits.accept_timeout
        )
        self._pending[token] = conn
        route.conns.add(conn)
        self._timer_changed = True
        self._actions.append(Notify(route.idurl, token))

    def _accept(self, conn: int, token: str) -> None:
        peer = self._pending.pop(token, None)
        if peer is None:
            self._refuse(conn, DropReason.UNKNOWN_TOKEN)
            return
        side = self._sides[peer]
        side.token = side.deadline = None
        side.partner = conn
        self._timer_changed = True
        self._sides[conn] = _Side(side.route, partner=peer)
        self._actions.append(Pair(peer, conn))

    def _refuse(self, conn: int, reason: DropReason) -> None:
        self.closed_by_reason[reason] += 1
        self._actions.append(Close(conn, reason))

    def relayed(self, conn: int, size: int, now: float) -> None:
        """``conn`` sent ``size`` bytes that were forwarded to its partner."""
        side = self._sides.get(conn)
        route = self.routes.get(side.route) if side else None
        if side is None or route is None:
            return
        route.bytes_relayed += size
        self.bytes_relayed += size
        if not self.limits.bytes_per_second:
            return
        self._refill(route, now)
        route.tokens -= size
        if route.tokens < 0 and side.paused_until is None:
            side.paused_until = now - route.tokens / self.limits.bytes_per_second
            self._timer_changed = True
            self._actions.append(Pause(conn))

    def _refill(self, route: Route, now: float) -> None:
        earned = (now - route.refilled) * self.limits.bytes_per_second
        route.tokens = min(self._burst, route.tokens + earned)
        route.refilled = now

    def buffered(self, conn: int, size: int, now: float) -> None:
        """The router now holds ``size`` bytes on their way to ``conn``."""
        side = self._sides.get(conn)
        if side is None:
            return
        route = self.routes.get(side.route)
        if route is None:
            return
        route.buffered += size - side.buffered
        side.buffered = size
        if route.buffered > self.limits.buffered_per_route:
            self._drop(conn, DropReason.OVER_BUFFER)

    def blocked(self, conn: int, now: float) -> None:
        """``conn`` takes no more now (the shell reads its partner no further meanwhile); it
        counts as stalled from the first such moment without an :meth:`unblocked` since."""
        side = self._sides.get(conn)
        if side is not None and side.blocked_since is None:
            side.blocked_since = now
            self._timer_changed = True

    def unblocked(self, conn: int) -> None:
        side = self._sides.get(conn)
        if side is not None and side.blocked_since is not None:
            side.blocked_since = None
            self._timer_changed = True

    def closed(self, conn: int) -> None:
        """``conn``'s socket closed; its partner closes too."""
        side = self._sides.pop(conn, None)
        if side is None:
            return
        self._forget(conn, side)
        if side.partner is not None and side.partner in self._sides:
            self._drop(side.partner, DropReason.PARTNER_CLOSED)

    def _drop(self, conn: int, reason: DropReason) -> None:
        """Close ``conn`` and its partner (a pair lives and dies whole)."""
        side = self._sides.get(conn)
        if side is None:
            return
        route = self.routes.get(side.route)
        if route is not None and reason in (DropReason.STALLED, DropReason.OVER_BUFFER):
            route.dropped += 1
        for member in (conn, side.partner):
            dropped = self._sides.pop(member, None) if member is not None else None
            if member is None or dropped is None:
                continue
            self._forget(member, dropped)
            self.closed_by_reason[reason] += 1
            self._actions.append(Close(member, reason))

    def _forget(self, conn: int, side: _Side) -> None:
        if side.token is not None:
            self._pending.pop(side.token, None)
        route = self.routes.get(side.route)
        if route is not None:
            route.conns.discard(conn)
            route.buffered -= side.buffered
        self._timer_changed = True

    # -- time -----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline; recomputed only when one changed, since the shell asks after
        every chunk it forwards."""
        if self._timer_changed:
            self._timer = self._next_deadline()
            self._timer_changed = False
        return self._timer

    def _next_deadline(self) -> float | None:
        times = []
        for side in self._sides.values():
            if side.deadline is not None:
                times.append(side.deadline)
            if side.blocked_since is not None:
                times.append(side.blocked_since + self.limits.stall_timeout)
            if side.paused_until is not None:
                times.append(side.paused_until)
        times.extend(route.expires for route in self.routes.values())
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        self._timer_changed = True
        for route in list(self.routes.values()):
            if now >= route.expires:
                self.unregister(route.idurl)
        for conn, side in list(self._sides.items()):
            if conn not in self._sides:
                continue  # dropped with its partner in this pass
            if side.deadline is not None and now >= side.deadline:
                self._drop(conn, DropReason.ACCEPT_TIMEOUT)
            elif (
                side.blocked_since is not None
                and now >= side.blocked_since + self.limits.stall_timeout
            ):
                self._drop(conn, DropReason.STALLED)
            elif side.paused_until is not None and now >= side.paused_until:
                side.paused_until = None
                self._actions.append(Resume(conn))

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    # -- reporting ------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, object]]:
        return [
            {
                "idurl": route.idurl,
                "route": route.route,
                "connections": len(route.conns),
                "bytes_relayed": route.bytes_relayed,
                "dropped": route.dropped,
            }
            for route in sorted(self.routes.values(), key=lambda r: r.idurl)
        ]
