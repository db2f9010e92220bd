"""p2p routes: BitDust's ``network/connected``, the node's open sessions with peers."""

from __future__ import annotations

from typing import Any

from bitdust.api.server import Call, Route, route
from bitdust.p2p.service import P2PService


@route("GET", "network/connected")
async def network_connected(call: Call) -> list[dict[str, Any]]:
    """One row per session: the peer's IDURL (None while its handshake runs), direction
    (incoming/outgoing), route (direct; routed sessions come with proxy-transport), address,
    state (handshake/open) and bytes each way on the wire."""
    return call.service("p2p", P2PService).sessions()


ROUTES: list[Route] = [network_connected]
