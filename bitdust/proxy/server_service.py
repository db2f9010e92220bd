"""The ``proxy-server`` service: a router for nodes that cannot accept connections.

It shares p2p's listener (the p2p endpoint diverts connections opening with a relay preamble
to :class:`~bitdust.proxy.router.Router`), routes the nodes that register over an authenticated
p2p session, and advertises itself in the DHT (role ``proxy-router``) so that proxy-transport
finds it through nodes-lookup.
"""

from __future__ import annotations

import enum
import resource
from typing import Any

from bitdust.dht.service import DHTService
from bitdust.lookup import adverts
from bitdust.node.service import Service, ServiceError, StatusSection
from bitdust.p2p.service import P2PService
from bitdust.proxy.relay import Relay, RelayLimits
from bitdust.proxy.router import Router
from bitdust.proxy.splice import PIPES


class RouterState(enum.StrEnum):
    """``proxy_router`` as `bitdust states` shows it (BitDust's names)."""

    AT_STARTUP = "AT_STARTUP"
    LISTEN = "LISTEN"  # routing, and advertised when it has a contact
    CLOSED = "CLOSED"


class ProxyServerService(Service):
    name = "proxy-server"
    metric_gauges = ("routes", "relayed_connections")

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.p2p: P2PService = node.service("p2p")
        self.dht: DHTService = node.service("entangled-dht")
        self.state = RouterState.AT_STARTUP
        self.advertiser = adverts.Advertiser(
            self.dht, adverts.Role.ROUTER, lambda: {"contact": self.p2p.contact}
        )

    async def start(self) -> None:
        if self.p2p.contact is None:
            raise ServiceError(
                "a router needs a contact peers can reach: set services/network/listen-host "
                "to this host's public address"
            )
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limits = RelayLimits(
            routes=self.config["services/proxy-server/routes-limit"],
            # p2p has a third of the descriptors, and the relay's pipes take a few
            connections=max(2, min(RelayLimits.connections, (nofile - 2 * PIPES) // 3)),
        )
        self.relay = Relay(limits)
        self.router = Router(self.relay, self.p2p.endpoint, self.p2p.contact)
        self.state = RouterState.LISTEN
        self.advertiser.start()  # advertised while routing (an advert outlives a missed refresh)

    async def stop(self) -> None:
        self.state = RouterState.CLOSED
        await self.advertiser.stop()
        self.router.close()

    # -- reporting ------------------------------------------------------------------------------

    def automats(self) -> list[tuple[str, str]]:
        return [("proxy_router", self.state.value)]

    def info(self) -> dict[str, Any]:
        routes = self.relay.stats()
        return {
            "state": self.state.value,
            "routes": len(routes),
            "routes_limit": self.relay.limits.routes,
            "connections_limit": self.relay.limits.connections,
            "relayed_connections": self.router.connections,
            "bytes_relayed": self.relay.bytes_relayed,
            "routed": routes,
            "counters": {
                "bytes_relayed": self.relay.bytes_relayed,
                "relayed_connections_closed": {
                    reason.name.lower(): count
                    for reason, count in self.relay.closed_by_reason.items()
                },
            },
        }

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        if StatusSection.PROXY not in sections:
            return {}
        return {StatusSection.PROXY.value: {"role": "router", **self.info()}}

    def status_text(self) -> str:
        return f"routing {len(self.relay.routes)} nodes"
