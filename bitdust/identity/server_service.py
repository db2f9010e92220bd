"""The ``identity-server`` service: its settings turned into a running identity server.

It serves the identities it holds over HTTP and takes new ones in over TCP; the port it writes in
IDURLs is the HTTP port its own host has in ``known-servers`` (80 behind nginx, as the guide runs
it), else its web port. Behind nginx every HTTP client is nginx itself, so the per-address
connection cap is lifted there (nginx limits each real client). The store's directory scan runs in
a worker thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
from typing import Any

from bitdust.identity import propagate
from bitdust.identity.errors import IdentityError
from bitdust.identity.propagate import KNOWN_SERVERS_SETTING as KNOWN_SERVERS
from bitdust.identity.server import IdentityServer, ServerLimits, start_identity_server
from bitdust.identity.store import IdentityStore
from bitdust.node.service import Service, ServiceError


class IdentityServerService(Service):
    server: IdentityServer
    live_keys = frozenset({"services/network/accept-legacy-identities"})
    #: figures of :meth:`info` exported at ``GET /metrics``
    metric_gauges = ("identities", "stored_bytes")

    async def start(self) -> None:
        host = self.config["services/identity-server/host"]
        if not host:
            raise ServiceError(
                "services/identity-server/host is empty: set it to this server's public host name"
            )
        web_port = self.config["services/identity-server/web-port"]
        public_port = next(
            (
                s.http_port
                for s in propagate.known_servers(self.config[KNOWN_SERVERS])
                if s.host == host
            ),
            web_port,
        )
        nofile, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits = ServerLimits.within_descriptors(nofile)
        if public_port != web_port:  # fronted by nginx: every client comes from its address
            limits = dataclasses.replace(
                limits, http_connections_per_address=limits.http_connections
            )
        try:
            store = await asyncio.to_thread(
                IdentityStore,
                self.node.paths.state_dir / "identity-server",
                host,
                public_port,
                expiry_seconds=self.config["services/identity-server/expire-after"],
                accept_legacy=self.config["services/network/accept-legacy-identities"],
            )
            self.server = await start_identity_server(
                store,
                self.node.bind_host,
                web_port,
                self.config["services/identity-server/tcp-port"],
                limits=limits,
            )
        except IdentityError as exc:
            raise ServiceError(str(exc)) from None
        except OSError as exc:
            raise ServiceError(f"cannot listen on {self.node.bind_host}: {exc}") from None

    async def stop(self) -> None:
        await self.server.close()

    def reload(self, changed: set[str]) -> None:
        self.server.store.accept_legacy = self.config["services/network/accept-legacy-identities"]

    def info(self) -> dict[str, Any]:
        store = self.server.store
        return {
            "host": store.host,
            "idurl_port": store.public_port,
            "web_port": self.server.web_port,
            "tcp_port": self.server.tcp_port,
            "identities": store.count(),
            "stored_bytes": store.stored_bytes(),
            "counters": {
                "served": store.served,
                "accepted": dict(store.accepted),
                "refused": dict(store.refused),
            },
        }

    def automats(self) -> list[tuple[str, str]]:
        return [("identity_server", "LISTEN")]
