"""The ``proxy-transport`` service: this node is reached through a proxy router.

On when the operator says the node cannot accept connections (``services/proxy-transport/
enabled``). Routers come from ``services/proxy-transport/preferred-routers`` (IDURLs, tried in
order) and then from nodes-lookup (role ``proxy-router``). Once registered it declares the
router's contact to identity-propagate and asks p2p to withdraw its own (a listener behind NAT
would only make peers wait for a connect timeout); while no router takes it, p2p's contact
stays published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from bitdust.lookup.adverts import Role
from bitdust.node.service import Service, StatusSection
from bitdust.p2p.service import P2PService
from bitdust.proxy.client import ProxyClient

if TYPE_CHECKING:
    from bitdust.lookup.service import NodesLookupService

PREFERRED = "services/proxy-transport/preferred-routers"
FIRST_ROUTER_WAIT = 5.0  # seconds start waits for the first router before the node is ready
LOOKUP_COUNT = 4  # routers asked of nodes-lookup when no preferred one is left


def preferred_routers(value: str) -> list[str]:
    """The IDURLs of the setting, in order (comma or space separated)."""
    return [idurl for idurl in value.replace(",", " ").split() if idurl]


class ProxyTransportService(Service):
    name = "proxy-transport"  # the owner of the contact it declares to identity-propagate

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.p2p: P2PService = node.service("p2p")
        self.lookup: NodesLookupService = node.service("nodes-lookup")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start looking for a router; with an identity, wait a little for the first answer,
        so that the first revision published at start names the router, not a contact that
        is withdrawn a moment later."""
        self.client = ProxyClient(self.p2p.endpoint, self._candidates, self._publish)
        self._task = asyncio.get_running_loop().create_task(self.client.run())
        if self.p2p.propagate.current is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_ROUTER_WAIT):
                    await self.client.first_attempt.wait()

    async def stop(self) -> None:
        """Stop renewing the route. The contact stays declared, as p2p's does: the node stops
        to shut down or restart, and the route id is the same at the same router."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _candidates(self, exclude: Collection[str]) -> list[str]:
        preferred = [r for r in preferred_routers(self.config[PREFERRED]) if r not in exclude]
        if preferred:
            return preferred
        found = await self.lookup.find(Role.ROUTER, LOOKUP_COUNT, exclude)
        return [candidate.idurl for candidate in found]

    def _publish(self, contacts: list[str]) -> None:
        self.p2p.propagate.set_contacts(self.name, contacts)
        self.p2p.publish_direct(not contacts)

    def info(self) -> dict[str, Any]:
        return self.client.status()

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        if StatusSection.PROXY not in sections:
            return {}
        return {StatusSection.PROXY.value: {"role": "client", **self.client.status()}}

    def status_text(self) -> str:
        router = self.client.router
        return f"routed through {router}" if router else "looking for a proxy router"
