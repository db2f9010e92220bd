"""The ``supplier`` service: disk space donated to customers, who store fragments of their
encrypted backups here over p2p (DESIGN §10; the protocol is :mod:`bitdust.storage.wire`).

:class:`Supplier` serves every storage request and stream on a p2p endpoint (or the p2p service,
which offers the same calls) from a :class:`~bitdust.storage.fragment_store.FragmentStore`: it
decodes with the wire's checked decoders, hands the store only checked fields, and answers a
refusal with its reason. Customers are hired while the quotas promised fit in the donated space
(quota = needed // suppliers * 2, BitDust's rule). The service opens the store under
``<state dir>/storage/`` and keeps the node's supplier advert, ``{"free": bytes}``, in the DHT.

A put succeeds for the customer only once the handler returned with the fragment kept (p2p
accepts a stream when its handler returns): a fragment refused at its final check (SHA-256, disk
full) is refused with the reason, even after its last byte was read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from typing import Any, Protocol

from bitdust.config import format_size
from bitdust.dht.service import DHTService
from bitdust.logs import RateLimitedLog
from bitdust.lookup.adverts import Advertiser, Role
from bitdust.node.service import Service, StatusSection
from bitdust.p2p.errors import P2PError
from bitdust.p2p.service import P2PService
from bitdust.p2p.transport import IncomingStream, OutgoingStream, RequestHandler, StreamHandler
from bitdust.storage import wire
from bitdust.storage.fragment_store import (
    CustomerUsage,
    FragmentStore,
    FragmentStoreError,
    PendingFragment,
)

log = logging.getLogger(__name__)

STORAGE_DIR = "storage"
WRITE_BATCH = 1024 * 1024  # bytes of a put gathered before one write in a worker thread
MAX_LOGGED_REFUSALS = 1024  # (peer, kind, reason) remembered so each is logged once
#: refusals that say something about this node rather than about the customer
OUR_FAULTS = frozenset({"disk", "corrupt"})
COUNTERS = (
    "hired", "released", "rejected", "fragments_stored", "bytes_stored", "fragments_served",
    "bytes_served", "fragments_deleted", "audits",
)  # fmt: skip


class Peers(Protocol):
    """What the supplier needs of p2p: :class:`P2PService` and ``P2PEndpoint`` both offer it."""

    def on_request(self, kind: str, handler: RequestHandler) -> None: ...

    def on_stream(self, kind: str, handler: StreamHandler) -> None: ...

    async def open_stream(self, idurl: str, kind: str, header: bytes = b"") -> OutgoingStream: ...


class Supplier:
    """The supplier's side of the storage protocol for every customer, over ``peers``."""

    def __init__(self, store: FragmentStore, donated: int, peers: Peers) -> None:
        self.store = store
        self.donated = donated
        self.peers = peers
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self.refused: Counter[str] = Counter()
        self._logged: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._log = RateLimitedLog(log)
        self.closed = False

    def serve(self) -> None:
        """Take every storage request and stream from now on."""
        for kind, handler in (
            (wire.HIRE, self._hire),
            (wire.RELEASE, self._release),
            (wire.GET, self._get),
            (wire.DELETE, self._delete),
            (wire.LIST, self._list),
            (wire.AUDIT, self._audit),
        ):
            self.peers.on_request(kind, self._refusing(kind, handler))
        self.peers.on_stream(wire.PUT, self._put)

    def close(self) -> None:
        """Refuse every request from now on (p2p keeps the handlers) and close the store."""
        self.closed = True
        self.store.close()

    # -- what the service and the API read ------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Bytes donated, stored and free (not promised to any customer: what a new customer
        can still hire), and how many customers and fragments."""
        usage = self.store.usage()
        return {
            "donated": self.donated,
            "used": usage.used,
            "free": max(0, self.donated - usage.allotted),
            "customers": usage.customers,
            "fragments": usage.fragments,
        }

    def space(self) -> dict[str, Any]:
        """BitDust's ``space/donated``: bytes donated, stored and free, and each customer."""
        totals = self.totals()
        customers = [customer.to_dict() for customer in self.store.customers()]
        return {**{key: totals[key] for key in ("donated", "used", "free")}, "customers": customers}

    def customers(self) -> list[CustomerUsage]:
        return self.store.customers()

    async def reject(self, idurl: str) -> int:
        """End ``idurl``'s contract from this side and delete its fragments; the bytes freed.
        NotACustomer when it is none."""
        freed = await asyncio.to_thread(self.store.release, idurl)
        self.counters["rejected"] += 1
        log.info("supplier: rejected customer %s, %d bytes freed", idurl, freed)
        return freed

    # -- refusals -------------------------------------------------------------------------------

    def _refusing(self, kind: str, handler: RequestHandler) -> RequestHandler:
        async def serve(peer: str, data: bytes) -> bytes:
            try:
                if self.closed:
                    raise wire.StorageRefused("this node is no longer a supplier")
                return await handler(peer, data)
            except (FragmentStoreError, wire.StorageRefused) as exc:
                raise self._refusal(peer, kind, exc) from None

        return serve

    def _refusal(
        self, peer: str, kind: str, exc: FragmentStoreError | wire.StorageRefused
    ) -> wire.StorageRefused:
        """Count a refusal, log it once per peer, kind and reason, and give the answer."""
        reason = exc.reason if isinstance(exc, FragmentStoreError) else "malformed"
        self.refused[reason] += 1
        key = (peer, kind, reason)
        if key not in self._logged:
            self._logged[key] = None
            if len(self._logged) > MAX_LOGGED_REFUSALS:
                self._logged.popitem(last=False)
            level = logging.WARNING if reason in OUR_FAULTS else logging.INFO
            self._log.log(level, "supplier: refused %s from %s: %s", kind, peer, exc)
        return exc if isinstance(exc, wire.StorageRefused) else wire.StorageRefused(str(exc))

    # -- the protocol ---------------------------------------------------------------------------

    async def _hire(self, peer: str, data: bytes) -> bytes:
        request = wire.HIRE_REQUEST.decode(data)
        quota = request["needed"] // request["suppliers"] * 2
        usage = await asyncio.to_thread(self.store.hire, peer, quota, self.donated)
        self.counters["hired"] += 1
        return wire.HIRE_ANSWER.encode(quota=usage.quota, used=usage.used)

    async def _release(self, peer: str, data: bytes) -> bytes:
        wire.RELEASE_REQUEST.decode(data)
        freed = await asyncio.to_thread(self.store.release, peer)
        self.counters["released"] += 1
        return wire.RELEASE_ANSWER.encode(freed=freed)

    async def _put(self, peer: str, stream: IncomingStream) -> None:
        """Refused before a byte is read when the header, the customer or its quota says so
        (the wire refuses sizes over ``MAX_FRAGMENT`` in the header)."""
        try:
            if self.closed:
                raise wire.StorageRefused("this node is no longer a supplier")
            header = wire.PUT_HEADER.decode(stream.header)
            pending = await self._begin_put(peer, header["id"], header["size"], header["sha256"])
            with pending:
                await self._receive(stream, pending)
        except (FragmentStoreError, wire.StorageRefused) as exc:
            stream.refuse(str(self._refusal(peer, wire.PUT, exc)))
        except P2PError:
            return  # the session ended: nothing was kept
        else:
            self.counters["fragments_stored"] += 1
            self.counters["bytes_stored"] += pending.size

    async def _begin_put(
        self, peer: str, fragment_id: bytes, size: int, sha256: bytes
    ) -> PendingFragment:
        """The store's ``begin_put`` in a worker thread. A handler cancelled meanwhile (its
        session ended) cannot stop the thread: the reservation the thread still makes is dropped
        once made, or the fragment would stay "being written" until the supplier restarts."""
        reserving = asyncio.ensure_future(
            asyncio.to_thread(self.store.begin_put, peer, fragment_id, size, sha256)
        )
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(_drop_reserved)
            raise

    @staticmethod
    async def _receive(stream: IncomingStream, pending: PendingFragment) -> None:
        batch = bytearray()
        async for chunk in stream:
            batch += chunk
            if len(batch) >= WRITE_BATCH or pending.received + len(batch) > pending.size:
                await asyncio.to_thread(pending.write, batch)
                batch.clear()
        if batch:
            await asyncio.to_thread(pending.write, batch)
        await asyncio.to_thread(pending.commit)

    async def _get(self, peer: str, data: bytes) -> bytes:
        """Stream the fragment back over the same session, then answer its size and SHA-256; a
        fragment found corrupt while it is sent is reset, never ended."""
        fragment_id = wire.GET_REQUEST.decode(data)["id"]
        reader = await asyncio.to_thread(self.store.open_fragment, peer, fragment_id)
        try:
            header = wire.FRAGMENT_HEADER.encode(id=fragment_id)
            stream = await self.peers.open_stream(peer, wire.FRAGMENT, header)
            try:
                while chunk := await asyncio.to_thread(reader.read):
                    await stream.write(chunk)
            except FragmentStoreError as exc:
                stream.reset(str(exc))
                raise
            await stream.finish()
        finally:
            reader.close()
        self.counters["fragments_served"] += 1
        self.counters["bytes_served"] += reader.size
        return wire.GET_ANSWER.encode(size=reader.size, sha256=reader.sha256)

    async def _delete(self, peer: str, data: bytes) -> bytes:
        ids = wire.DELETE_REQUEST.decode(data)["ids"]
        deleted, freed = await asyncio.to_thread(self.store.delete, peer, ids)
        self.counters["fragments_deleted"] += deleted
        return wire.DELETE_ANSWER.encode(deleted=deleted, freed=freed)

    async def _list(self, peer: str, data: bytes) -> bytes:
        request = wire.LIST_REQUEST.decode(data)
        rows, more = await asyncio.to_thread(
            self.store.listing, peer, request["after"], request["limit"]
        )
        return wire.LIST_ANSWER.encode(fragments=[list(row) for row in rows], more=more)

    async def _audit(self, peer: str, data: bytes) -> bytes:
        request = wire.AUDIT_REQUEST.decode(data)
        digest = await asyncio.to_thread(
            self.store.audit,
            peer,
            request["id"],
            request["nonce"],
            request["offset"],
            request["length"],
        )
        self.counters["audits"] += 1
        return wire.AUDIT_ANSWER.encode(digest=digest)


class SupplierService(Service):
    name = "supplier"
    metric_gauges = ("donated", "used", "free", "customers", "fragments")
    supplier: Supplier

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.p2p: P2PService = node.service("p2p")
        self.dht: DHTService = node.service("entangled-dht")
        self.advertiser = Advertiser(
            self.dht, Role.SUPPLIER, lambda: {"free": self.supplier.totals()["free"]}
        )

    async def start(self) -> None:
        root = self.node.paths.state_dir / STORAGE_DIR
        store = await asyncio.to_thread(FragmentStore, root)
        self.supplier = Supplier(store, self.config["services/supplier/donated-space"], self.p2p)
        self.supplier.serve()
        self.advertiser.start()  # retried quietly until the node has an identity
        log.info("supplier: %s donated, store in %s", format_size(self.supplier.donated), root)

    async def stop(self) -> None:
        await self.advertiser.stop()
        await asyncio.to_thread(self.supplier.close)

    # -- reporting ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        counters = {**self.supplier.counters, "refused": dict(self.supplier.refused)}
        return {**self.supplier.totals(), "counters": counters}

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        if StatusSection.CUSTOMERS not in sections:
            return {}
        customers = [customer.to_dict() for customer in self.supplier.customers()]
        return {StatusSection.CUSTOMERS.value: customers}

    def status_text(self) -> str:
        totals = self.supplier.totals()
        return (
            f"supplier for {totals['customers']} customers, {format_size(totals['used'])} of "
            f"{format_size(totals['donated'])} used"
        )


def _drop_reserved(reserving: asyncio.Future[PendingFragment]) -> None:
    if not reserving.cancelled() and reserving.exception() is None:
        reserving.result().abort()
