"""The ``entangled-dht`` service: the node's settings turned into a running DHT node.

Known nodes are resolved through the node (host map first, then DNS); ``genesis`` starts a new
network alone. Records signed with users' identity keys (RSA, with the owner's IDURL) are
accepted besides the nodes' own Ed25519 ones. The node is ready as soon as its socket is bound:
joining goes on in the background with back-off, and STATUS says how it goes. The API calls one
method per route; what to sign with and the record rules are decided here and in the core.
"""

from __future__ import annotations

import logging
from typing import Any

from bitdust.dht.records import Record, dht_key
from bitdust.dht.schemes import RsaSigner, Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.transport import DHTEndpoint, start_dht
from bitdust.dht.wire import Contact
from bitdust.node.service import Service, ServiceError, ServiceUnavailable, StatusSection
from bitdust.rsakeys import KeyRefused

log = logging.getLogger(__name__)

DB_NAME = "dht.sqlite3"


def settings_from_config(config: Any) -> DHTSettings:
    prefix = "services/entangled-dht/"
    try:
        return DHTSettings(
            k=config[prefix + "bucket-size"],
            alpha=config[prefix + "parallel-calls"],
            rpc_timeout=config[prefix + "rpc-timeout"],
            refresh_interval=config[prefix + "refresh-timeout"],
            default_age=int(config[prefix + "default-age"]),
            max_age=int(config[prefix + "max-age"]),
        )
    except ValueError as exc:
        raise ServiceError(f"{prefix}*: {exc}") from None


class DHTService(Service):
    dht: DHTEndpoint

    async def start(self) -> None:
        known = self.config["services/entangled-dht/known-nodes"]
        addresses = []
        if known != "genesis":
            for host, port in known:
                try:
                    addresses.append((await self.node.resolve(host), port))
                except ServiceError as exc:
                    log.warning("DHT: skipping known node %s:%d: %s", host, port, exc)
            if known and not addresses:
                raise ServiceError("none of services/entangled-dht/known-nodes resolves")
        port = self.config["services/entangled-dht/udp-port"]
        try:
            self.dht = await start_dht(
                self.node.bind_host,
                port,
                self.node.paths.state_dir / DB_NAME,
                settings_from_config(self.config),
                known_nodes=addresses,
            )
        except OSError as exc:
            raise ServiceError(f"cannot bind UDP {self.node.bind_host}:{port}: {exc}") from None
        log.info("DHT on UDP port %d: %s", self.dht.address[1], self.dht.status)

    async def stop(self) -> None:
        await self.dht.close()

    async def find_node(self, target: bytes) -> list[Contact]:
        return await self.dht.find_node(target)

    async def get_value(self, name: str) -> list[Record]:
        """Verified records under the DHT key of ``name``, one per signer, newest first."""
        return await self.dht.get_value(dht_key(name))

    async def set_value(self, name: str, value: bytes, age: int | None = None) -> int:
        """Store ``value`` under the DHT key of ``name`` for ``age`` seconds (default: the
        configured default age); returns how many nodes took it.

        Signed with the user's identity key and IDURL when this node has an identity, else with
        the node's own DHT key. RecordRefused says which rule the record would break.
        """
        signer, owner = self._identity_signer()
        return await self.dht.set_value(dht_key(name), value, age=age, owner=owner, signer=signer)

    def _identity_signer(self) -> tuple[Signer | None, str | None]:
        try:
            current = getattr(self.node.service("identity-propagate"), "current", None)
        except (ServiceUnavailable, KeyError):
            return None, None
        if current is None:
            return None, None
        try:
            return RsaSigner(current.private_key), current.identity.idurl
        except KeyRefused as exc:
            raise ServiceError(f"the identity key cannot sign DHT records: {exc}") from None

    def info(self) -> dict[str, Any]:
        return self.dht.stats()

    def network_status(self, sections: list[str]) -> dict[str, Any]:
        if StatusSection.DHT not in sections:
            return {}
        stats = self.dht.stats()
        layer = {
            "layer_id": 0,
            "contacts": stats["contacts"],
            "buckets": stats["buckets"],
            "data_store_items": stats["items"],
            "node_id": stats["node_id"],
        }
        return {
            StatusSection.DHT.value: {
                "udp_port": stats["udp_port"],
                "contacts": stats["contacts"],
                "joined": stats["joined"],
                "status": stats["status"],
                "data_store_items": stats["items"],
                "counters": stats["counters"],
                "layers": [layer],
            }
        }

    def status_text(self) -> str:
        return "DHT " + self.dht.status
