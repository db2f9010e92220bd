"""p2p routes: BitDust's ``network/connected`` (the node's sessions with peers) and
``user/ping`` (open a session with a peer by IDURL and time one request over it)."""

from __future__ import annotations

from typing import Any

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.identity.errors import IdurlError
from bitdust.identity.idurl import parse_idurl
from bitdust.p2p.service import P2PService


@route("GET", "network/connected")
async def network_connected(call: Call) -> list[dict[str, Any]]:
    """One row per session: the peer's IDURL (None while its handshake runs), direction
    (incoming/outgoing), route (direct; routed sessions come with proxy-transport), address,
    state (handshake/open) and bytes each way on the wire."""
    return call.service("p2p", P2PService).sessions()


MAX_PING_TIMEOUT = 60


@route("GET POST", "user/ping", Param("id", str, required=True), Param("timeout", int, default=15))
async def user_ping(call: Call) -> dict[str, Any]:
    """``id`` is the peer's IDURL; the answer has the round trip in milliseconds."""
    idurl = call.args["id"]
    try:
        parse_idurl(idurl)
    except IdurlError as exc:
        raise ApiError(400, f"field 'id': {exc}") from None
    timeout = call.args["timeout"]
    if not 1 <= timeout <= MAX_PING_TIMEOUT:
        raise ApiError(400, f"field 'timeout': expected 1 to {MAX_PING_TIMEOUT} seconds")
    return await call.service("p2p", P2PService).ping(idurl, timeout)


ROUTES: list[Route] = [network_connected, user_ping]
