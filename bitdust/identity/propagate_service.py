"""The ``identity-propagate`` service: this node's identity, created, restored and kept published.

It owns ``<state>/identity/``: it creates the identity, restores it from a key backup, and sends
every new revision to the servers the identity names as its sources, retrying in the background;
it re-sends the current one daily so that servers never expire it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from bitdust.identity import keys, local, propagate
from bitdust.identity.document import check_contacts
from bitdust.identity.errors import DocumentError, IdentityError, IdentityServerError
from bitdust.identity.idurl import parse_idurl
from bitdust.identity.propagate import KNOWN_SERVERS_SETTING as KNOWN_SERVERS
from bitdust.node.service import Service, ServiceError

log = logging.getLogger(__name__)

REPUBLISH_INTERVAL = 24 * 3600.0
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)
# How long the publisher waits for the node to finish starting, so that the services owning
# listeners have declared their contacts before the first revision is signed.
START_GRACE = 60.0
_READY_POLL = 0.1


class IdentityPropagateService(Service):
    """This node's identity: create, restore, back up, and keep it published."""

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.directory = node.paths.state_dir / "identity"
        self.current: local.LocalIdentity | None = None
        self.last_results: list[dict[str, Any]] = []
        self._contacts: dict[str, tuple[str, ...]] = {}  # owner service -> its contacts
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()  # contacts changed: sign and send now

    async def start(self) -> None:
        if local.local_identity_exists(self.directory):
            try:
                self.current = local.load_local_identity(self.directory)
            except IdentityError as exc:
                raise ServiceError(f"cannot load this node's identity: {exc}") from None
            self._publish_in_background()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- what the node publishes ---------------------------------------------------------------

    def contacts(self) -> list[str]:
        """Where peers reach this node: what the services that run listeners declared through
        :meth:`set_contacts`, in the order they declared it; empty when none did."""
        return [contact for owned in self._contacts.values() for contact in owned]

    def set_contacts(self, owner: str, contacts: Sequence[str]) -> None:
        """The service ``owner`` (p2p: ``tcp://<host>:<port>`` of its listener; proxy-transport:
        its router's contact) says where peers reach this node through it; an empty list
        withdraws them (call it when the listener closes).

        Only a service that listens decides contacts, so nothing is published where nothing
        listens. When the published list changes, the identity gets a new revision and is sent
        to its servers again (in the background).
        """
        if not isinstance(owner, str) or not owner:
            raise ServiceError("set_contacts needs the name of the service that owns the listener")
        declared = {**self._contacts, owner: tuple(contacts)}
        try:
            check_contacts(tuple(contact for owned in declared.values() for contact in owned))
        except DocumentError as exc:
            raise ServiceError(f"{owner} cannot publish these contacts: {exc}") from None
        self._contacts = {name: owned for name, owned in declared.items() if owned}
        if self.current is not None:
            self._wake.set()

    def servers(self) -> list[propagate.KnownServer]:
        servers = propagate.known_servers(self.config[KNOWN_SERVERS])
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
                await asyncio.to_thread(
                    local.save_local_identity, self.directory, created.private_key, created.identity
                )
            except IdentityError as exc:
                raise ServiceError(str(exc)) from None
            self.current = local.LocalIdentity(created.private_key, created.identity)
            self.last_results = [_result_view(r) for r in created.results]
            log.info("identity %s created", created.identity.idurl)
        self._publish_in_background()  # keeps it alive on its servers, and follows its contacts
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
                await asyncio.to_thread(local.save_local_identity, self.directory, key, identity)
            except IdentityError as exc:
                raise ServiceError(str(exc)) from None
            self.current = local.LocalIdentity(key, identity)
            log.info("identity %s restored from a key backup", identity.idurl)
        self._publish_in_background()
        return self.view()

    async def _recover(
        self, backup: bytes, passphrase: str | None, idurl: str | None
    ) -> tuple[keys.RSAPrivateKey, Any]:
        """Fetch the identity from the backup's IDURL, or, when that server is gone, from the
        same name on each known server (an identity lists all of them as sources)."""
        # the passphrase KDF takes tens of milliseconds: not on the event loop
        backup_idurl, key = await asyncio.to_thread(keys.read_key_backup, backup, passphrase)
        name = parse_idurl(idurl or backup_idurl).name
        candidates = [idurl or backup_idurl]
        candidates += [s.idurl(name) for s in propagate.known_servers(self.config[KNOWN_SERVERS])]
        failures = []
        for candidate in dict.fromkeys(candidates):
            try:
                identity = await propagate.fetch_identity_of_key(
                    key,
                    candidate,
                    self.resolve,
                    accept_legacy=self.config["services/network/accept-legacy-identities"],
                )
            except IdentityServerError as exc:
                failures.append(f"{candidate}: {exc}")
                continue
            return key, identity
        raise IdentityError("cannot fetch the identity: " + "; ".join(failures))

    def backup_bytes(self, passphrase: str | None) -> bytes:
        current = self.require()
        try:
            return keys.key_backup_bytes(current.identity.idurl, current.private_key, passphrase)
        except IdentityError as exc:
            raise ServiceError(str(exc)) from None

    async def _sign_current_contacts(self) -> local.LocalIdentity:
        """The identity to publish: a new revision when the declared contacts changed."""
        current = self.require()
        contacts = self.contacts()
        if list(current.identity.contacts) == contacts:
            return current
        identity = propagate.next_revision(current.identity, current.private_key, contacts=contacts)
        await asyncio.to_thread(local.save_identity_document, self.directory, identity)
        self.current = local.LocalIdentity(current.private_key, identity)
        log.info("identity revision %d: contacts %s", identity.revision, contacts or "none")
        return self.current

    def _publish_in_background(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._publish_forever())

    async def _until_node_started(self) -> None:
        """Wait (at most :data:`START_GRACE`) until every service has started: the services
        that run listeners declare their contacts while they start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_GRACE
        while not self.node.ready and loop.time() < deadline:
            await asyncio.sleep(_READY_POLL)

    async def _publish_forever(self) -> None:
        """Send the identity to the servers it names as sources, again with growing delays while
        one cannot be reached (those that have it take the same revision as a touch); then once
        a day, or at once when the contacts change."""
        await self._until_node_started()
        attempt = 0
        while True:
            self._wake.clear()
            try:
                async with self._lock:
                    current = await self._sign_current_contacts()
                servers = propagate.source_servers(
                    current.identity, propagate.known_servers(self.config[KNOWN_SERVERS])
                )
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
                delay = REPUBLISH_INTERVAL
            else:
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    # -- reporting -----------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        view = self.require().identity.to_dict()
        view["xml"] = self.require().identity.to_xml().decode()
        view["propagation"] = self.last_results
        return view

    async def network_status(self, sections: list[str]) -> dict[str, Any]:
        return self._identity_fields()

    def _identity_fields(self) -> dict[str, Any]:
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
        return {"identity": self._identity_fields(), "propagation": self.last_results}


def _result_view(result: propagate.PropagateResult) -> dict[str, Any]:
    return {
        "server": str(result.server),
        "ok": result.ok,
        "idurl": result.idurl,
        "error": result.error,
    }
