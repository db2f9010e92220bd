"""The ``customer`` service: hires suppliers, publishes the list of them, and stores this node's
files on them (DESIGN §10).

Hiring: while fewer than ``services/customer/suppliers-number`` suppliers are hired, it finds
candidates through nodes-lookup and asks each to take it as a customer with a quota of
``needed-space / N * 2``. Position i of the list holds fragment i of every chunk. The list is
published under this identity's owned DHT key (only it can write there; readers prove the owner),
refreshed before it expires.

Chunks: a chunk's id is a keyed hash of its plaintext, so a chunk the account already stored is
never encoded or sent again; two uploads that meet the same new chunk at once send it once. A new
chunk is compressed when it pays, encrypted, erasure-coded k-of-N in a worker thread, and its N
fragments are put on the N suppliers in parallel; it is recorded only once all of them kept
theirs. Reading takes the first k fragments that arrive and, should the chunk's tag not verify
(a supplier returned wrong bytes), asks for more and tries other combinations.

Without an identity it waits: its API calls say to create one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bitdust.dht.service import DHTService
from bitdust.lookup.adverts import Role
from bitdust.lookup.service import NodesLookupService
from bitdust.node.service import Service, ServiceError, StatusSection
from bitdust.p2p.errors import P2PError
from bitdust.p2p.service import P2PService
from bitdust.storage import codec
from bitdust.storage.backup import (
    BackupError,
    ChunkPlacer,
    FragmentUnavailable,
    UploadResult,
    back_up,
    read_chunk,
    restore,
)
from bitdust.storage.catalogue import Catalogue, FileVersion
from bitdust.storage.suppliers import (
    SUPPLIER_LIST_NAME,
    Suppliers,
    decode_supplier_list,
    encode_supplier_list,
)
from bitdust.storage.wire import StorageRefused

log = logging.getLogger(__name__)

CATALOGUE_FILE = "storage/catalogue.sqlite3"
HIRE_RETRY = 10.0  # seconds between hiring rounds while suppliers are missing
HIRE_CHECK = 600.0  # seconds between checks once every position is filled
LIST_AGE = 24 * 3600  # the published supplier list lives this long...
LIST_REFRESH = 6 * 3600  # ...and is published again this often
NO_IDENTITY = "this node has no identity yet: bitdust identity create NAME"


class CustomerService(Service, ChunkPlacer):
    """Backs up and restores this node's files; see the module docstring."""

    dht: DHTService
    p2p: P2PService
    lookup: NodesLookupService

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.wanted = int(self.config["services/customer/suppliers-number"])
        self.needed_space = int(self.config["services/customer/needed-space"])
        self.k = int(self.config["services/customer/data-fragments"]) or max(1, self.wanted // 2)
        self.versions_kept = int(self.config["services/customer/versions-kept"])
        self._keys: tuple[object, codec.DataKeys] | None = None
        self._storing: dict[bytes, asyncio.Future[None]] = {}
        self._uploads = 0
        self._hired = asyncio.Event()
        self._last_error = ""
        self._published = 0.0
        self.counters = {
            "chunks_sent": 0,
            "chunks_deduplicated": 0,
            "chunks_restored": 0,
            "fragments_refused": 0,
        }

    async def start(self) -> None:
        if self.k > self.wanted:
            raise ServiceError(
                f"services/customer/data-fragments ({self.k}) cannot exceed "
                f"services/customer/suppliers-number ({self.wanted})"
            )
        self.dht = self.node.service("entangled-dht")
        self.p2p = self.node.service("p2p")
        self.lookup = self.node.service("nodes-lookup")
        self.catalogue = await asyncio.to_thread(
            Catalogue, self.node.paths.state_dir / CATALOGUE_FILE
        )
        self.suppliers = Suppliers(self.p2p)
        self._hiring = asyncio.get_running_loop().create_task(self._keep_hired())

    async def stop(self) -> None:
        self._hiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._hiring
        await asyncio.to_thread(self.catalogue.close)

    # -- keys -------------------------------------------------------------------------------------

    def data_keys(self) -> codec.DataKeys:
        """This identity's data keys (derived once per identity key)."""
        current = self.p2p.propagate.current
        if current is None:
            raise ServiceError(NO_IDENTITY)
        if self._keys is None or self._keys[0] is not current.private_key:
            keys = codec.DataKeys.from_identity_key(current.private_key)
            self._keys = (current.private_key, keys)
        return self._keys[1]

    def own_names(self) -> tuple[str, ...]:
        """This identity's global ids (``alice@host-a.com``), as BitDust's remote paths name it."""
        current = self.p2p.propagate.current
        if current is None:
            return ()
        return tuple(idurl.global_id for idurl in current.identity.idurls)

    # -- hiring -----------------------------------------------------------------------------------

    async def _keep_hired(self) -> None:
        while True:
            try:
                missing = await self.hire_missing()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no identity, no DHT yet, nobody answering: retry
                if str(exc) != self._last_error:  # said once, not every round
                    log.info("customer: cannot hire suppliers yet: %s", exc)
                self._last_error = str(exc)
                missing = 1
            await asyncio.sleep(HIRE_RETRY if missing else HIRE_CHECK)

    async def hire_missing(self) -> int:
        """Hire suppliers for the empty positions and publish the list; how many are missing."""
        self.data_keys()  # no identity: nothing to hire for
        hired = [row.idurl for row in self.catalogue.suppliers()]
        missing = self.wanted - len(hired)
        if missing > 0:
            for candidate in await self.lookup.find(Role.SUPPLIER, missing * 2, exclude=hired):
                if len(hired) == self.wanted:
                    break
                try:
                    await self.suppliers.hire(candidate.idurl, self.needed_space, self.wanted)
                except (P2PError, StorageRefused) as exc:
                    log.info("customer: %s did not take this node: %s", candidate.idurl, exc)
                    continue
                hired.append(candidate.idurl)
                await asyncio.to_thread(self.catalogue.set_suppliers, hired, self.quota)
                log.info("customer: hired %s at position %d", candidate.idurl, len(hired) - 1)
                self._published = 0.0
            missing = self.wanted - len(hired)
        if missing == 0:
            self._hired.set()
            self._last_error = ""
        else:
            self._last_error = (
                f"{len(hired)} of {self.wanted} suppliers hired; the network offers no more yet"
            )
        if hired and time.time() - self._published > LIST_REFRESH:
            await self.publish_supplier_list(hired)
        return missing

    @property
    def quota(self) -> int:
        return self.needed_space // self.wanted * 2

    async def publish_supplier_list(self, hired: list[str]) -> None:
        value = encode_supplier_list(hired, self.k, int(time.time()))
        await self.dht.set_value(SUPPLIER_LIST_NAME, value, age=LIST_AGE, owned=True)
        self._published = time.time()

    async def supplier_list_in_dht(self, idurl: str | None) -> dict[str, Any]:
        """The supplier list ``idurl`` (this node by default) published, as the DHT shows it."""
        if idurl is None:
            current = self.p2p.propagate.current
            if current is None:
                raise ServiceError(NO_IDENTITY)
            idurl = str(current.identity.idurl)
        found = await self.dht.get_value(SUPPLIER_LIST_NAME, owner=idurl)
        if not found:
            raise ServiceError(f"no supplier list of {idurl} in the DHT")
        try:
            listing = decode_supplier_list(found[0].record.value)
        except StorageRefused as exc:
            raise ServiceError(
                f"the supplier list of {idurl} in the DHT is unusable: {exc}"
            ) from None
        return {"idurl": idurl, **listing, "n": len(listing["suppliers"])}

    async def hired_suppliers(self) -> list[str]:
        """The N hired suppliers by position; ServiceError when not all are hired yet."""
        self.data_keys()
        hired = [row.idurl for row in self.catalogue.suppliers()]
        if len(hired) < self.wanted:
            with contextlib.suppress(Exception):
                await self.hire_missing()
            hired = [row.idurl for row in self.catalogue.suppliers()]
        if len(hired) < self.wanted:
            raise ServiceError(
                f"cannot store data: {len(hired)} of {self.wanted} suppliers hired"
                + (f" ({self._last_error})" if self._last_error else "")
            )
        return hired

    # -- chunks (ChunkPlacer) ---------------------------------------------------------------------

    async def store_chunk(self, plaintext: bytes) -> tuple[bytes, int]:
        keys = self.data_keys()
        chunk_id = await asyncio.to_thread(keys.chunk_id_of, plaintext)
        while True:
            if self.catalogue.has_chunk(chunk_id):
                self.counters["chunks_deduplicated"] += 1
                return chunk_id, 0
            running = self._storing.get(chunk_id)
            if running is None:
                break
            await asyncio.shield(running)  # another upload stores it right now
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._storing[chunk_id] = done
        try:
            sent = await self._encode_and_put(keys, chunk_id, plaintext)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()
            raise
        finally:
            del self._storing[chunk_id]
        self.counters["chunks_sent"] += 1
        return chunk_id, sent

    async def _encode_and_put(self, keys: codec.DataKeys, chunk_id: bytes, plaintext: bytes) -> int:
        hired = await self.hired_suppliers()
        encoded = await asyncio.to_thread(
            codec.encode_chunk, keys, plaintext, self.k, len(hired), chunk_id
        )
        fragment_ids = [keys.fragment_id_of(chunk_id, index) for index in range(len(hired))]

        async def put(index: int) -> None:
            try:
                await self.suppliers.put(
                    hired[index], fragment_ids[index], encoded.fragments[index]
                )
            except (P2PError, TimeoutError) as exc:
                raise BackupError(
                    f"supplier {index} ({hired[index]}) did not store a fragment: {exc}"
                ) from None

        await _all_or_nothing([put(index) for index in range(len(hired))])
        placements = [(index, hired[index], fragment_ids[index]) for index in range(len(hired))]
        await asyncio.to_thread(
            self.catalogue.add_chunk,
            chunk_id,
            encoded.size,
            len(encoded.fragments[0]),
            self.k,
            len(hired),
            placements,
        )
        return sum(len(fragment) for fragment in encoded.fragments)

    async def load_chunk(self, chunk_id: bytes) -> bytes:
        keys = self.data_keys()
        row = self.catalogue.chunk(chunk_id)
        placements = {
            p.index: p for p in self.catalogue.placements(chunk_id) if p.state == "stored"
        }

        async def fetch(index: int) -> bytes:
            placement = placements[index]
            try:
                fragment = await self.suppliers.get(
                    placement.supplier, placement.fragment_id, row.stored_size
                )
                codec.fragment_info(fragment)
            except (P2PError, StorageRefused, TimeoutError, codec.MalformedFragment) as exc:
                self.counters["fragments_refused"] += 1
                raise FragmentUnavailable(f"from {placement.supplier}: {exc}") from None
            return fragment

        async def decode(fragments: dict[int, bytes]) -> bytes:
            return await asyncio.to_thread(codec.decode_chunk, keys, chunk_id, fragments)

        plaintext = await read_chunk(sorted(placements), row.k, fetch, decode, chunk_id.hex())
        self.counters["chunks_restored"] += 1
        return plaintext

    # -- files ------------------------------------------------------------------------------------

    async def upload(
        self, pieces: Any, remote: str, size: int, mode: int, mtime_ns: int
    ) -> UploadResult:
        await self.hired_suppliers()
        self._uploads += 1
        try:
            result = await back_up(pieces, self, self.catalogue, remote, size, mode, mtime_ns)
        finally:
            self._uploads -= 1
        freed = await asyncio.to_thread(self.catalogue.prune, remote, self.versions_kept)
        await self.delete_chunks(freed)
        return result

    async def download(
        self, version: FileVersion, write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self.data_keys()
        await restore(version, self, write)

    async def delete(self, remote: str) -> dict[str, Any]:
        """Forget ``remote`` (a file, or a directory and everything under it) and delete the
        fragments of chunks nothing references any more."""
        files = len(self.catalogue.list_files(remote))
        freed = await asyncio.to_thread(self.catalogue.delete_path, remote)
        deleted = await self.delete_chunks(freed)
        return {"remote": remote, "files": files, "chunks_freed": deleted}

    async def delete_chunks(self, chunks: list[Any]) -> int:
        """Delete the fragments of chunks nobody references any more, supplier by supplier;
        the chunks whose fragments are all gone are forgotten, the others retried later (at the
        next deletion) so that a supplier away now does not keep data for ever."""
        if self._uploads:  # a running upload may be about to reference one of them again
            return 0
        pending = {row.id for row in chunks} | {
            row.id for row in self.catalogue.unreferenced_chunks()
        }
        by_supplier: dict[str, list[tuple[bytes, bytes]]] = {}
        for chunk_id in pending:
            for placement in self.catalogue.placements(chunk_id):
                by_supplier.setdefault(placement.supplier, []).append(
                    (chunk_id, placement.fragment_id)
                )
        failed: set[bytes] = set()
        for supplier, pairs in by_supplier.items():
            try:
                await self.suppliers.delete(supplier, [fragment_id for _, fragment_id in pairs])
            except (P2PError, StorageRefused, TimeoutError) as exc:
                log.info("customer: %s did not delete fragments (retried later): %s", supplier, exc)
                failed.update(chunk_id for chunk_id, _ in pairs)
        done = pending - failed
        await asyncio.to_thread(self.catalogue.forget_chunks, done)
        return len(done)

    # -- reporting --------------------------------------------------------------------------------

    def supplier_rows(self) -> list[dict[str, Any]]:
        used = self.catalogue.stored_bytes()
        return [
            {
                "position": row.position,
                "idurl": row.idurl,
                "state": "hired",
                "quota": row.quota,
                "used": used.get(row.idurl, 0),
                "hired": row.hired_at,
            }
            for row in self.catalogue.suppliers()
        ]

    def consumed(self) -> dict[str, Any]:
        used = self.catalogue.stored_bytes()
        return {
            "suppliers": len(self.catalogue.suppliers()),
            "wanted": self.wanted,
            "k": self.k,
            "stored": sum(used.values()),
            "needed": self.needed_space,
        }

    def info(self) -> dict[str, Any]:
        return {
            "suppliers": len(self.catalogue.suppliers()),
            "wanted": self.wanted,
            "k": self.k,
            "sent_bytes": self.suppliers.bytes_sent,
            "received_bytes": self.suppliers.bytes_received,
            "last_error": self._last_error,
            "counters": dict(self.counters),
        }

    metric_gauges = ("suppliers",)

    def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        return {StatusSection.SUPPLIERS.value: self.supplier_rows()}

    def status_text(self) -> str:
        return (
            f"customer: {len(self.catalogue.suppliers())} of {self.wanted} suppliers, "
            f"{self.k}-of-{self.wanted} fragments"
            + (f" ({self._last_error})" if self._last_error else "")
        )


async def _all_or_nothing(calls: list[Awaitable[None]]) -> None:
    """Run ``calls`` at once; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
