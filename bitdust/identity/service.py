"""The ``identity-server`` and ``identity-propagate`` services: settings turned into running parts.

identity-server serves the identities it holds over HTTP and takes new ones in over TCP; the port
it writes in IDURLs is the HTTP port its own host has in ``known-servers`` (80 behind nginx, as
the guide runs it), else its web port.

identity-propagate owns this node's identity (``<state>/identity/``): it creates it, restores it
from a key backup, and sends every new revision to all known servers, retrying in the background;
it re-sends the current one daily so that servers never expire it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any

from bitdust.identity import keys, local, propagate
from bitdust.identity.errors import IdentityError, IdentityServerError
from bitdust.identity.idurl import parse_idurl
from bitdust.identity.server import IdentityServer, start_identity_server
from bitdust.identity.store import IdentityStore
from bitdust.node.service import Service, ServiceError

log = logging.getLogger(__name__)

REPUBLISH_INTERVAL = 24 * 3600.0
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)


def known_servers(config: Any) -> list[propagate.KnownServer]:
    return [
        propagate.KnownServer(host, http, tcp)
        for host, http, tcp in config["services/identity-propagate/known-servers"]
    ]


class IdentityServerService(Service):
    server: IdentityServer
    live_keys = frozenset({"services/network/accept-legacy-identities"})

    async def start(self) -> None:
        host = self.config["services/identity-server/host"]
        if not host:
            raise ServiceError(
                "services/identity-server/host is empty: set it to this server's public host name"
            )
        web_port = self.config["services/identity-server/web-port"]
        public_port = next(
            (s.http_port for s in known_servers(self.config) if s.host == host), web_port
        )
        try:
            store = IdentityStore(
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
            "identities": len(store.names()),
        }

    def automats(self) -> list[tuple[str, str]]:
        return [("identity_server", "LISTEN")]


class IdentityPropagateService(Service):
    """This node's identity: create, restore, back up, and keep it published."""

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.directory = node.paths.state_dir / "identity"
        self.current: local.LocalIdentity | None = None
        self.last_results: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if local.local_identity_exists(self.directory):
            try:
                self.current = local.load_local_identity(self.directory)
            except IdentityError as exc:
                raise ServiceError(f"cannot load this node's identity: {exc}") from None
            contacts = self.contacts()
            if list(self.current.identity.contacts) != contacts:
                await self._new_revision(contacts)
            self._publish_in_background()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- what the node publishes ---------------------------------------------------------------

    def contacts(self) -> list[str]:
        """Where peers reach this node; never a loopback address unless listen-host is one."""
        if not self.config.enabled("p2p"):
            return []
        port = self.config["services/tcp-connections/tcp-port"]
        host = self.node.listen_host or _public_address()
        return [f"tcp://{host}:{port}"] if host else []

    def servers(self) -> list[propagate.KnownServer]:
        servers = known_servers(self.config)
        if not servers:
            raise ServiceError(
                "services/identity-propagate/known-servers is empty: list this network's "
                "identity servers (host:http_port:tcp_port,...)"
            )
        return servers[: self.config["services/identity-propagate/max-servers"]]

    async def resolve(self, host: str) -> str:
        return await self.node.resolve(host)

    # -- operations -----------------------------------------------------------------------------

    def require(self) -> local.LocalIdentity:
        if self.current is None:
            raise ServiceError(
                "this node has no identity yet: create one (bitdust identity create NAME) or "
                "restore a key backup (bitdust identity restore FILE)"
            )
        return self.current

    async def create(self, name: str, key_bits: int) -> dict[str, Any]:
        async with self._lock:
            if self.current is not None:
                raise ServiceError(
                    f"this node already has the identity {self.current.identity.idurl}"
                )
            try:
                created = await propagate.create_identity(
                    name,
                    self.servers(),
                    self.contacts(),
                    self.resolve,
                    key_bits=key_bits,
                    min_servers=self.config["services/identity-propagate/min-servers"],
                )
                local.save_local_identity(self.directory, created.private_key, created.identity)
            except IdentityError as exc:
                raise ServiceError(str(exc)) from None
            self.current = local.LocalIdentity(created.private_key, created.identity)
            self.last_results = [_result_view(r) for r in created.results]
            log.info("identity %s created", created.identity.idurl)
            return self.view()

    async def recover(
        self, backup: bytes, passphrase: str | None, idurl: str | None
    ) -> dict[str, Any]:
        async with self._lock:
            if self.current is not None:
                raise ServiceError(
                    f"this node already has the identity {self.current.identity.idurl}; "
                    "restore on a fresh node"
                )
            try:
                key, identity = await self._recover(backup, passphrase, idurl)
                local.save_local_identity(self.directory, key, identity)
            except IdentityError as exc:
                raise ServiceError(str(exc)) from None
            self.current = local.LocalIdentity(key, identity)
            log.info("identity %s restored from a key backup", identity.idurl)
        contacts = self.contacts()
        if list(identity.contacts) != contacts:
            await self._new_revision(contacts)
        self._publish_in_background()
        return self.view()

    async def _recover(
        self, backup: bytes, passphrase: str | None, idurl: str | None
    ) -> tuple[keys.RSAPrivateKey, Any]:
        """Fetch the identity from the backup's IDURL, or, when that server is gone, from the
        same name on each known server (an identity lists all of them as sources)."""
        backup_idurl, _ = keys.read_key_backup(backup, passphrase)
        name = parse_idurl(idurl or backup_idurl).name
        candidates = [idurl or backup_idurl]
        candidates += [s.idurl(name) for s in known_servers(self.config)]
        failures = []
        for candidate in dict.fromkeys(candidates):
            try:
                return await propagate.recover_identity(
                    backup,
                    self.resolve,
                    passphrase=passphrase,
                    idurl=candidate,
                    accept_legacy=self.config["services/network/accept-legacy-identities"],
                )
            except IdentityServerError as exc:
                failures.append(f"{candidate}: {exc}")
        raise IdentityError("cannot fetch the identity: " + "; ".join(failures))

    def backup_bytes(self, passphrase: str | None) -> bytes:
        current = self.require()
        try:
            return keys.key_backup_bytes(current.identity.idurl, current.private_key, passphrase)
        except IdentityError as exc:
            raise ServiceError(str(exc)) from None

    async def _new_revision(self, contacts: list[str]) -> None:
        current = self.require()
        identity = propagate.next_revision(current.identity, current.private_key, contacts=contacts)
        local.save_identity_document(self.directory, identity)
        self.current = local.LocalIdentity(current.private_key, identity)
        log.info("identity revision %d: contacts %s", identity.revision, contacts or "none")

    def _publish_in_background(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._publish_forever())

    async def _publish_forever(self) -> None:
        """Send the identity to every known server, again with growing delays while one cannot
        be reached (those that have it take the same revision as a touch); then once a day."""
        attempt = 0
        while True:
            current = self.require()
            sources = set(current.identity.sources)
            name = current.identity.name
            # the servers the identity names as its sources: any other would refuse it
            servers = [s for s in known_servers(self.config) if s.idurl(name) in sources]
            try:
                results = await propagate.propagate(
                    current.identity.to_xml(), servers, self.resolve
                )
                done = all(r.ok or r.refused for r in results)
            except Exception:  # a bug must not end publishing for good: log it, try again later
                log.exception("identity propagation failed")
                results, done = [], False
            self.last_results = [_result_view(r) for r in results]
            if done:
                attempt = 0
                await asyncio.sleep(REPUBLISH_INTERVAL)
            else:
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1

    # -- reporting -----------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        view = self.require().identity.to_dict()
        view["xml"] = self.require().identity.to_xml().decode()
        view["propagation"] = self.last_results
        return view

    def network_status(self, sections: list[str]) -> dict[str, Any]:
        if self.current is None:
            return {}
        identity = self.current.identity
        return {
            "idurl": identity.idurl,
            "global_id": identity.global_id,
            "identity_sources": list(identity.sources),
            "identity_contacts": list(identity.contacts),
            "identity_revision": identity.revision,
        }

    def status_text(self) -> str:
        if self.current is None:
            return "no identity yet"
        return f"identity {self.current.identity.global_id}"

    def info(self) -> dict[str, Any]:
        return {"identity": self.network_status([]), "propagation": self.last_results}


def _result_view(result: propagate.PropagateResult) -> dict[str, Any]:
    return {
        "server": str(result.server),
        "ok": result.ok,
        "idurl": result.idurl,
        "error": result.error,
    }


def _public_address() -> str | None:
    """This host's address as its own name resolves, unless that is a loopback address
    (Debian maps the host name to 127.0.1.1)."""
    try:
        infos = socket.getaddrinfo(socket.getfqdn(), None, socket.AF_INET)
    except OSError:
        return None
    for info in infos:
        address = info[4][0]
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None
