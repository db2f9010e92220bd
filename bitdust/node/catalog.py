"""The fixed table of services: what each needs, what it conflicts with, where its code lives.

The dependencies are fixed (DESIGN §5) so that the guide's ``bitdust set services/X/enabled``
toggles behave the same on every node. Implementations are named by import path and loaded only
when the service is enabled, which keeps start-up lean; PyInstaller collects them from this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    needs: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    implementation: str | None = None  # "module:Class"; None = not provided by this version

    @property
    def automat_name(self) -> str:
        return "service_" + self.name.replace("-", "_")


CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec("entangled-dht", implementation="bitdust.dht.service:DHTService"),
    ServiceSpec("identity-server", implementation="bitdust.identity.service:IdentityServerService"),
    ServiceSpec(
        "identity-propagate", implementation="bitdust.identity.service:IdentityPropagateService"
    ),
    ServiceSpec("p2p", needs=("identity-propagate",)),
    ServiceSpec("nodes-lookup", needs=("entangled-dht", "p2p")),
    ServiceSpec("proxy-server", needs=("p2p",), conflicts=("proxy-transport",)),
    ServiceSpec("proxy-transport", needs=("p2p", "nodes-lookup"), conflicts=("proxy-server",)),
    ServiceSpec("supplier", needs=("p2p", "entangled-dht")),
    ServiceSpec("customer", needs=("p2p", "entangled-dht", "nodes-lookup")),
    ServiceSpec("private-messages", needs=("p2p", "entangled-dht")),
)

SPECS: dict[str, ServiceSpec] = {spec.name: spec for spec in CATALOG}


def start_order() -> list[ServiceSpec]:
    """Services ordered so that every one comes after the services it needs."""
    ordered: list[ServiceSpec] = []
    placed: set[str] = set()

    def place(spec: ServiceSpec, path: tuple[str, ...]) -> None:
        if spec.name in placed:
            return
        if spec.name in path:
            raise RuntimeError("service dependency cycle: " + " -> ".join((*path, spec.name)))
        for need in spec.needs:
            place(SPECS[need], (*path, spec.name))
        placed.add(spec.name)
        ordered.append(spec)

    for spec in CATALOG:
        place(spec, ())
    return ordered
