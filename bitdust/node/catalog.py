"""The fixed table of services: what each needs, conflicts with, listens on and reports, and where
its code lives.

The dependencies are fixed (DESIGN §5) so that the guide's ``bitdust set services/X/enabled``
toggles behave the same on every node. Implementations are named by import path and loaded only
when the service is enabled, which keeps start-up lean; PyInstaller collects them from this table.
A new service is one row here: nothing else in the node (checks, status, the API) names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bitdust.node.service import StatusSection


@dataclass(frozen=True)
class Listener:
    """A socket a service binds and the setting that chooses its port (0 = any free port).

    Services that declare the same listener share one socket (p2p and the proxy router)."""

    kind: Literal["tcp", "udp"]
    port_key: str


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    needs: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    implementation: str | None = None  # "module:Class"; None = not provided by this version
    listeners: tuple[Listener, ...] = ()
    #: the `network/status` sections this service fills; each section has one owner
    status_sections: tuple[StatusSection, ...] = ()

    @property
    def automat_name(self) -> str:
        return "service_" + self.name.replace("-", "_")


TCP_CONNECTIONS = Listener("tcp", "services/tcp-connections/tcp-port")

CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "entangled-dht",
        implementation="bitdust.dht.service:DHTService",
        listeners=(Listener("udp", "services/entangled-dht/udp-port"),),
        status_sections=(StatusSection.DHT,),
    ),
    ServiceSpec(
        "identity-server",
        implementation="bitdust.identity.server_service:IdentityServerService",
        listeners=(
            Listener("tcp", "services/identity-server/web-port"),
            Listener("tcp", "services/identity-server/tcp-port"),
        ),
    ),
    ServiceSpec(
        "identity-propagate",
        implementation="bitdust.identity.propagate_service:IdentityPropagateService",
    ),
    ServiceSpec(
        "p2p",
        needs=("identity-propagate",),
        implementation="bitdust.p2p.service:P2PService",
        listeners=(TCP_CONNECTIONS,),
    ),
    ServiceSpec(
        "nodes-lookup",
        needs=("entangled-dht", "p2p"),
        implementation="bitdust.lookup.service:NodesLookupService",
    ),
    ServiceSpec(
        "proxy-server",
        needs=("p2p", "entangled-dht"),  # a router advertises itself in the DHT for finders
        conflicts=("proxy-transport",),
        implementation="bitdust.proxy.server_service:ProxyServerService",
        listeners=(TCP_CONNECTIONS,),
        status_sections=(StatusSection.PROXY,),  # shared with proxy-transport: they conflict
    ),
    ServiceSpec(
        "proxy-transport",
        needs=("p2p", "nodes-lookup"),
        conflicts=("proxy-server",),
        implementation="bitdust.proxy.transport_service:ProxyTransportService",
        status_sections=(StatusSection.PROXY,),
    ),
    ServiceSpec(
        "supplier",
        needs=("p2p", "entangled-dht"),
        implementation="bitdust.storage.supplier:SupplierService",
        status_sections=(StatusSection.CUSTOMERS,),
    ),
    ServiceSpec(
        "customer",
        needs=("p2p", "entangled-dht", "nodes-lookup"),
        implementation="bitdust.storage.customer:CustomerService",
        status_sections=(StatusSection.SUPPLIERS,),
    ),
    ServiceSpec("private-messages", needs=("p2p", "entangled-dht")),
)

SPECS: dict[str, ServiceSpec] = {spec.name: spec for spec in CATALOG}


def start_order(catalog: Sequence[ServiceSpec] = CATALOG) -> list[ServiceSpec]:
    """Services ordered so that every one comes after the services it needs."""
    specs = {spec.name: spec for spec in catalog}
    ordered: list[ServiceSpec] = []
    placed: set[str] = set()

    def place(spec: ServiceSpec, path: tuple[str, ...]) -> None:
        if spec.name in placed:
            return
        if spec.name in path:
            raise RuntimeError("service dependency cycle: " + " -> ".join((*path, spec.name)))
        for need in spec.needs:
            place(specs[need], (*path, spec.name))
        placed.add(spec.name)
        ordered.append(spec)

    for spec in catalog:
        place(spec, ())
    return ordered


def section_owners(catalog: Sequence[ServiceSpec] = CATALOG) -> dict[StatusSection, str]:
    """Which service fills each `network/status` section."""
    return {section: spec.name for spec in catalog for section in spec.status_sections}
