"""p2p routes: BitDust's ``network/connected`` (the node's sessions with peers), ``user/ping``
(open a session with a peer by IDURL and time one request over it) and ``network/speedtest``
(stream data to or from a peer and measure it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.identity.errors import IdurlError
from bitdust.identity.idurl import parse_idurl
from bitdust.p2p.speedtest import MAX_BYTES, MAX_MARKER

if TYPE_CHECKING:
    from bitdust.p2p.service import P2PService


def _p2p(call: Call) -> P2PService:
    return call.service("p2p")


@route("GET", "network/connected")
async def network_connected(call: Call) -> list[dict[str, Any]]:
    """One row per session: the peer's IDURL (None while its handshake runs), direction
    (incoming/outgoing), route (direct; routed sessions come with proxy-transport), address,
    state (handshake/open) and bytes each way on the wire."""
    return _p2p(call).sessions()


MAX_PING_TIMEOUT = 60


@route("GET POST", "user/ping", Param("id", str, required=True), Param("timeout", int, default=15))
async def user_ping(call: Call) -> dict[str, Any]:
    """``id`` is the peer's IDURL; the answer has the round trip in milliseconds."""
    idurl = _idurl(call.args["id"], "id")
    timeout = call.args["timeout"]
    if not 1 <= timeout <= MAX_PING_TIMEOUT:
        raise ApiError(400, f"field 'timeout': expected 1 to {MAX_PING_TIMEOUT} seconds")
    return await _p2p(call).ping(idurl, timeout)


MAX_SPEEDTEST_TIMEOUT = 600
DIRECTIONS = ("up", "down")


@route(
    "POST",
    "network/speedtest",
    Param("idurl", str, required=True),
    Param("bytes", int, default=10_000_000),
    Param("direction", str, default="up"),
    Param("timeout", int, default=120),
    Param("marker", str, default=""),
)
async def network_speedtest(call: Call) -> dict[str, Any]:
    """Stream ``bytes`` pseudo-random bytes to the peer ``idurl`` (``direction`` up) or from
    it (down) over a p2p session, like iperf: bytes, seconds, MB/s, digests_match. ``marker``
    (at most 64 bytes) starts every chunk, for tests that look for it on the wire."""
    idurl = _idurl(call.args["idurl"], "idurl")
    size, direction, timeout = call.args["bytes"], call.args["direction"], call.args["timeout"]
    if not 1 <= size <= MAX_BYTES:
        raise ApiError(400, f"field 'bytes': expected 1 to {MAX_BYTES}")
    if direction not in DIRECTIONS:
        raise ApiError(400, "field 'direction': expected up or down")
    if not 1 <= timeout <= MAX_SPEEDTEST_TIMEOUT:
        raise ApiError(400, f"field 'timeout': expected 1 to {MAX_SPEEDTEST_TIMEOUT} seconds")
    marker = call.args["marker"].encode()
    if len(marker) > MAX_MARKER:
        raise ApiError(400, f"field 'marker': at most {MAX_MARKER} bytes")
    p2p = _p2p(call)
    return await p2p.run_speedtest(idurl, size, direction == "down", timeout, marker)


def _idurl(value: str, field: str) -> str:
    try:
        parse_idurl(value)
    except IdurlError as exc:
        raise ApiError(400, f"field {field!r}: {exc}") from None
    return value


ROUTES: list[Route] = [network_connected, user_ping, network_speedtest]
