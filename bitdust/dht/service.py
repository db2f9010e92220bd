"""The ``entangled-dht`` service: the node's settings turned into a running DHT node.

Known nodes are resolved through the node (host map first, then DNS); ``genesis`` starts a new
network alone. Records signed with users' identity keys (RSA, with the owner's IDURL) are
accepted besides the nodes' own Ed25519 ones. The node is ready as soon as its socket is bound:
joining goes on in the background with back-off, and STATUS says how it goes. The API calls one
method per route; what to sign with and the record rules are decided here and in the core.

This shell, not the core, may use the identity package: it signs with the node's identity key
when identity-propagate has one, and it fetches identities (``identity.client``) to show a
record's owner IDURL only when that identity's key signed it, and to find an owner's owned keys.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bitdust import keysize, rsakeys
from bitdust.dht.owners import Found, OwnerKeys, OwnerUnknown
from bitdust.dht.records import dht_key, owned_key
from bitdust.dht.schemes import RsaSigner, Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.transport import DHTEndpoint, start_dht
from bitdust.dht.wire import Contact
from bitdust.identity.client import fetch_identity
from bitdust.identity.document import parse_identity
from bitdust.identity.errors import IdentityError
from bitdust.identity.signing import verify as verify_identity
from bitdust.node.service import Service, ServiceError, ServiceUnavailable, StatusSection

log = logging.getLogger(__name__)

DB_NAME = "dht.sqlite3"
OWNER_FETCH_TIMEOUT = 5.0


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
    """The node's DHT: ``find_node``, ``get_value`` and ``set_value`` serve the API's routes."""

    #: figures of :meth:`info` exported at ``GET /metrics`` (its ``counters`` are, by the rule)
    metric_gauges = ("contacts", "buckets", "items", "published", "bytes", "pending", "operations")
    dht: DHTEndpoint
    owners: OwnerKeys

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
        self.owners = OwnerKeys(self._owner_public_key)
        log.info("DHT on UDP port %d: %s", self.dht.address[1], self.dht.status)

    async def stop(self) -> None:
        await self.dht.close()

    async def find_node(self, target: bytes) -> list[Contact]:
        return await self.dht.find_node(target)

    async def get_value(self, name: str, owner: str | None = None) -> list[Found]:
        """Verified records under ``name``, one per signer, newest first, each with its owner
        IDURL only when that identity's key signed it.

        With ``owner`` (an IDURL), the records of that identity's *owned* key of ``name``: only
        its own record can be there. ServiceError when the identity cannot be fetched.
        """
        if owner is None:
            records = await self.dht.get_value(dht_key(name))
            return list(await asyncio.gather(*(self.owners.verified(r) for r in records)))
        public_key = await self.owners.public_key(owner)
        if public_key is None:
            raise ServiceError(f"{owner}: cannot fetch this identity to find its records")
        label = name.encode("utf-8")
        records = await self.dht.get_value(owned_key(public_key, label))
        return [Found(r, owner) for r in records if r.public_key == public_key and r.name == label]

    async def set_value(
        self, name: str, value: bytes, age: int | None = None, owned: bool = False
    ) -> int:
        """Store ``value`` under ``name`` for ``age`` seconds (default: the configured default
        age); returns how many nodes took it. ``owned`` puts it under the signer's owned key of
        ``name``, which nobody else can write (readers ask with the owner's IDURL).

        Signed with the user's identity key and IDURL when this node has an identity, else with
        the node's own DHT key. RecordRefused says which rule the record would break.
        """
        signer, owner = self._identity_signer()
        label = name.encode("utf-8") if owned else None
        return await self.dht.set_value(
            dht_key(name), value, age=age, owner=owner, signer=signer, name=label
        )

    async def _owner_public_key(self, idurl: str) -> bytes:
        """The public key of the verified identity at ``idurl`` (for ``OwnerKeys``)."""
        accept_legacy = bool(self.config["services/network/accept-legacy-identities"])
        try:
            data = await fetch_identity(idurl, self.node.resolve, timeout=OWNER_FETCH_TIMEOUT)
            identity = parse_identity(data)
            verify_identity(identity, accept_legacy)
            if idurl not in {str(known) for known in identity.idurls}:
                raise OwnerUnknown(f"{idurl}: the identity found there does not name it")
            return rsakeys.public_key_der(rsakeys.check_public_key(identity.public_key))
        except (IdentityError, keysize.KeyRefused) as exc:
            raise OwnerUnknown(str(exc)) from None

    def _identity_signer(self) -> tuple[Signer | None, str | None]:
        try:
            current = getattr(self.node.service("identity-propagate"), "current", None)
        except (ServiceUnavailable, KeyError):
            return None, None
        if current is None:
            return None, None
        try:
            return RsaSigner(current.private_key), current.identity.idurl
        except keysize.KeyRefused as exc:
            raise ServiceError(f"the identity key cannot sign DHT records: {exc}") from None

    def info(self) -> dict[str, Any]:
        return self.dht.stats()

    async def network_status(self, sections: list[str]) -> dict[str, Any]:
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
