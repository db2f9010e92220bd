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

Keeping data alive, in the background every MAINTENANCE_TICK: on a node whose catalogue is empty
it first looks for this identity's catalogue copy on the suppliers its DHT list names (a new
machine after ``identity restore``); it keeps an encrypted copy of the catalogue off-site after
every change (``offsite``); it audits the suppliers every ``audit-interval`` (``audit``), replaces
the ones the repair policy says must go and rebuilds the chunks down to the repair threshold
(``repair``).

Without an identity it waits: its API calls say to create one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bitdust.dht.service import DHTService
from bitdust.files import atomic_write, fsync_dir
from bitdust.identity.keys import derive_key
from bitdust.lookup.adverts import Role
from bitdust.lookup.service import NodesLookupService
from bitdust.node.service import Service, ServiceError, StatusSection
from bitdust.p2p.errors import RequestRefused
from bitdust.p2p.service import P2PService
from bitdust.storage import codec, offsite
from bitdust.storage.audit import Auditor, make_challenges
from bitdust.storage.backup import ChunkPlacer, FragmentUnavailable, back_up, read_chunk, restore
from bitdust.storage.catalogue import Catalogue, FileVersion
from bitdust.storage.chunker import Chunker
from bitdust.storage.interface import BackupError, UploadResult
from bitdust.storage.repair import RepairPolicy
from bitdust.storage.suppliers import (
    SUPPLIER_LIST_NAME,
    Suppliers,
    decode_supplier_list,
    encode_supplier_list,
)
from bitdust.storage.wire import FAILED, REFUSED, UNREACHABLE, StorageRefused

log = logging.getLogger(__name__)

CATALOGUE_FILE = "storage/catalogue.sqlite3"
MAINTENANCE_TICK = 2.0  # seconds between rounds of background work
#: Rounds that look for a catalogue to recover before a node with an empty one hires anew (the
#: DHT may not show this identity's supplier list at the very first try).
RECOVERY_ROUNDS = 3
CHALLENGES_PER_FRAGMENT = 4  # audits answered before a fragment is fetched whole to check it
REPAIRS_AT_ONCE = 64  # chunks rebuilt per maintenance round (the rest at the next ones)
HIRE_RETRY = 10.0  # seconds between hiring rounds while suppliers are missing
HIRE_CHECK = 600.0  # seconds between checks once every position is filled
LIST_AGE = 24 * 3600  # the published supplier list lives this long...
LIST_REFRESH = 6 * 3600  # ...and is published again this often
NO_IDENTITY = "this node has no identity yet: bitdust identity create NAME"
CATALOGUE_KEY_LABEL = "storage/catalogue/v1"


class SupplierRefused(BackupError):
    """A supplier answered a put with a refusal (its disk is full, the customer is over quota
    or no longer its customer): another supplier takes the position."""


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
        self._last_error = ""
        self._published = 0.0
        self._next_hire = 0.0
        self._next_audit = time.monotonic() + float(self.config["services/customer/audit-interval"])
        self._recovery_rounds = 0
        self._pushed_generation = -1
        # the catalogue's copies on the suppliers, once they have told: nothing is stored
        # off-site before (a copy stored blind could overwrite the newest one)
        self._copies: offsite.Copies | None = None
        self.counters = {
            "chunks_sent": 0,
            "chunks_deduplicated": 0,
            "chunks_restored": 0,
            "fragments_refused": 0,
            "suppliers_replaced": 0,
            "chunks_rebuilt": 0,
        }
        self._replacing: dict[int, asyncio.Lock] = {}

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
        self.auditor = Auditor(
            self.catalogue,
            self.suppliers,
            int(self.config["services/customer/audit-sample"]),
            CHALLENGES_PER_FRAGMENT,
        )
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        self._maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._maintenance
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

    async def _maintain(self) -> None:
        """The customer's background work, one round every MAINTENANCE_TICK seconds: recover
        the catalogue on a new machine, hire, keep the off-site copy current."""
        while True:
            try:
                await self.maintenance_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no identity, no DHT yet, nobody answering: next round
                if str(exc) != self._last_error:  # said once, not every round
                    log.info("customer: %s", exc)
                self._last_error = str(exc)
            await asyncio.sleep(MAINTENANCE_TICK)

    async def maintenance_round(self) -> None:
        if self.p2p.propagate.current is None:
            raise ServiceError(NO_IDENTITY)
        now = time.monotonic()
        if self._recovery_rounds < RECOVERY_ROUNDS and not self.catalogue.suppliers():
            self._recovery_rounds += 1
            if not await self.recover_catalogue():
                return  # no hiring while this identity's own suppliers may still show up
        if self._copies is None and self.catalogue.suppliers():
            await self.find_catalogue_copies()
        if now >= self._next_hire:
            missing = await self.hire_missing()
            self._next_hire = now + (HIRE_RETRY if missing else HIRE_CHECK)
        if now >= self._next_audit and len(self.catalogue.suppliers()) == self.wanted:
            self._next_audit = now + float(self.config["services/customer/audit-interval"])
            for result in await self.auditor.audit_all(time.time()):
                if result.failed:
                    log.warning(
                        "customer: supplier %d %s failed %d of %d audited fragments",
                        result.position,
                        result.supplier,
                        len(result.failed),
                        result.checked,
                    )
            await self.repair_round()
        pending = self.catalogue.generation != self._pushed_generation
        if pending and self._copies is not None and not self._uploads:
            await self.push_catalogue(self._copies)

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
                except FAILED as exc:
                    log.info("customer: %s did not take this node: %s", candidate.idurl, exc)
                    continue
                hired.append(candidate.idurl)
                await asyncio.to_thread(self.catalogue.set_suppliers, hired, self.quota)
                log.info("customer: hired %s at position %d", candidate.idurl, len(hired) - 1)
                self._published = 0.0
            missing = self.wanted - len(hired)
        if missing == 0:
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

    # -- replacing suppliers and rebuilding ------------------------------------------------------

    async def replace_supplier(self, position: int, failed: str | None = None) -> str:
        """Hire a new supplier for ``position`` found through nodes-lookup; its fragments are
        rebuilt onto it by the next repair. ``failed`` is the supplier the caller saw fail: when
        the position already moved on, the new one is kept. Returns the new supplier."""
        async with self._replacing.setdefault(position, asyncio.Lock()):
            hired = [row.idurl for row in self.catalogue.suppliers()]
            if failed is not None and hired[position] != failed:
                return hired[position]  # replaced meanwhile, by another chunk's failure
            for candidate in await self.lookup.find(Role.SUPPLIER, 4, exclude=hired):
                try:
                    await self.suppliers.hire(candidate.idurl, self.needed_space, self.wanted)
                except FAILED as exc:
                    log.info("customer: %s did not take this node: %s", candidate.idurl, exc)
                    continue
                await asyncio.to_thread(
                    self.catalogue.replace_supplier, position, candidate.idurl, self.quota
                )
                self._published = 0.0
                self.counters["suppliers_replaced"] += 1
                log.warning(
                    "customer: supplier %d %s replaced by %s",
                    position,
                    hired[position],
                    candidate.idurl,
                )
                return candidate.idurl
            raise ServiceError(
                f"no other supplier could be hired for position {position} ({hired[position]})"
            )

    async def repair_round(self) -> int:
        """Replace the suppliers the policy says must go, then rebuild every chunk down to the
        repair threshold of healthy fragments; how many chunks were rebuilt."""
        policy = self.policy()
        for position in policy.to_replace(self.catalogue.supplier_health(), time.time()):
            await self.replace_supplier(position)
        rebuilt = 0
        # a pass over every chunk's placements: 0.4 s at 100,000 chunks, off the event loop
        to_repair = await asyncio.to_thread(
            self.catalogue.chunks_to_repair, policy.threshold, set()
        )
        for chunk_id in to_repair[:REPAIRS_AT_ONCE]:
            try:
                await self.rebuild_chunk(chunk_id)
            except (BackupError, ServiceError) as exc:  # retried at the next round
                log.warning("customer: chunk %s not rebuilt yet: %s", chunk_id.hex()[:16], exc)
                continue
            rebuilt += 1
        return rebuilt

    async def rebuild_chunk(self, chunk_id: bytes) -> None:
        """Restore a chunk from any k healthy fragments and put the missing ones back."""
        keys = self.data_keys()
        encoded = await self._encode_known(keys, chunk_id, await self.load_chunk(chunk_id))
        await self._put_missing(keys, chunk_id, encoded)
        self.counters["chunks_rebuilt"] += 1

    async def _encode_known(
        self, keys: codec.DataKeys, chunk_id: bytes, plaintext: bytes
    ) -> codec.EncodedChunk:
        """A catalogued chunk encoded again, as it was (its own k of n)."""
        row = self.catalogue.chunk(chunk_id)
        return await asyncio.to_thread(codec.encode_chunk, keys, plaintext, row.k, row.n, chunk_id)

    async def _put_missing(
        self, keys: codec.DataKeys, chunk_id: bytes, encoded: codec.EncodedChunk
    ) -> int:
        """Put the fragments of a known chunk that are not stored (bad, or on a supplier that
        was replaced) where they belong; encoding is deterministic, so each is the one that was
        lost. Returns the bytes sent."""
        hired = [row.idurl for row in self.catalogue.suppliers()]
        sent = 0
        for placement in self.catalogue.placements(chunk_id):
            if placement.state == "stored":
                continue
            index = placement.index
            fragment = encoded.fragments[index]
            fragment_id = keys.fragment_id_of(chunk_id, index)
            await self._put(hired[index], fragment_id, fragment, index)
            digest, challenges = await asyncio.to_thread(audit_checks, fragment)
            await asyncio.to_thread(
                self.catalogue.move_placement,
                chunk_id,
                index,
                hired[index],
                fragment_id,
                digest,
                challenges,
            )
            sent += len(fragment)
        return sent

    def policy(self) -> RepairPolicy:
        threshold = int(self.config["services/customer/repair-threshold"])
        return RepairPolicy(
            k=self.k,
            n=self.wanted,
            threshold=threshold or RepairPolicy.default_threshold(self.k, self.wanted),
            away_limit=float(self.config["services/customer/supplier-away-limit"]),
            audit_failures_limit=int(self.config["services/customer/audit-failures-limit"]),
        )

    # -- the catalogue off-site ---------------------------------------------------------------

    def catalogue_key(self) -> bytes:
        current = self.p2p.propagate.current
        if current is None:
            raise ServiceError(NO_IDENTITY)
        return derive_key(current.private_key, CATALOGUE_KEY_LABEL)

    async def push_catalogue(self, copies: offsite.Copies) -> None:
        """Store the catalogue as it is now on the suppliers: its chunks (those not there
        already), then its manifest in the slot not holding the newest copy; then delete the
        chunks only the overwritten copy used."""
        generation = self.catalogue.generation
        hired = await self.hired_suppliers()
        keys, catalogue_key = self.data_keys(), self.catalogue_key()
        data = await asyncio.to_thread(self.catalogue.snapshot_bytes)
        chunker = Chunker()
        chunks = await asyncio.to_thread(lambda: chunker.feed(data) + chunker.finish())
        on_suppliers = copies.chunk_ids()
        listed = []
        for chunk in chunks:
            chunk_id = await asyncio.to_thread(keys.chunk_id_of, chunk)
            if chunk_id not in on_suppliers:
                encoded = await asyncio.to_thread(
                    codec.encode_chunk, keys, chunk, self.k, len(hired), chunk_id
                )
                await self._put_to_most(
                    [
                        self._put(hired[i], keys.fragment_id_of(chunk_id, i), fragment, i)
                        for i, fragment in enumerate(encoded.fragments)
                    ]
                )
                on_suppliers.add(chunk_id)
            listed.append((chunk_id, len(chunk)))
        digest = hashlib.sha256(data).digest()
        manifest = offsite.Manifest(
            generation, len(data), digest, self.k, tuple(hired), tuple(listed)
        )
        slot = copies.next_slot()
        sealed = offsite.seal(catalogue_key, slot, manifest)
        manifest_id = offsite.slot_id(catalogue_key, slot)
        await self._put_to_most(
            [self._put(supplier, manifest_id, sealed, i) for i, supplier in enumerate(hired)]
        )
        unused, stored_on = copies.stored(slot, manifest)
        self._pushed_generation = generation
        if unused:
            await self._delete_fragments(unused, list(stored_on))
        log.info("customer: catalogue generation %d stored off-site (slot %d)", generation, slot)

    async def _put_to_most(self, puts: list[Awaitable[None]]) -> None:
        """Run ``puts`` (one per supplier) and accept the outcome when at least k + 1 (all
        when N = k) succeeded: a catalogue copy must not wait for a supplier that is away until
        it is replaced, and k + 1 leaves one to spare when it is read back."""
        outcomes = await asyncio.gather(*puts, return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if any(not isinstance(failure, BackupError) for failure in failures):
            raise next(f for f in failures if not isinstance(f, BackupError))
        if len(outcomes) - len(failures) < min(len(outcomes), self.k + 1):
            raise failures[0]

    async def recover_catalogue(self) -> bool:
        """On a node whose catalogue is empty (a new machine, restored from the key backup):
        find this identity's supplier list in the DHT and the newest catalogue copy on those
        suppliers, and take it as the local catalogue. True when one was recovered."""
        if self.catalogue.suppliers() or self.catalogue.list_files(limit=1):
            return False
        try:
            listing = await self.supplier_list_in_dht(None)
        except ServiceError:
            return False  # nothing published: a new account
        found, _ = await self._catalogue_copies(listing["suppliers"])
        copies = offsite.Copies.found(found)
        newest = copies.newest
        if newest is None:
            quota = self.quota
            await asyncio.to_thread(self.catalogue.set_suppliers, listing["suppliers"], quota)
            log.info("customer: supplier list recovered from the DHT; no catalogue copy yet")
            return False
        data = await self._read_catalogue_copy(newest)
        path = self.node.paths.state_dir / CATALOGUE_FILE
        staged = path.with_name(path.name + ".recovered")
        await asyncio.to_thread(atomic_write, staged, data, mode=0o600, overwrite=True)
        # opened once off the event loop: checked (a bad copy changes nothing) and migrated
        await asyncio.to_thread(lambda: Catalogue(staged).close())
        # swapped without yielding to the event loop, so that an API call meanwhile sees the
        # empty catalogue or the recovered one, never a closed one
        self.catalogue.close()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        staged.replace(path)
        fsync_dir(path.parent)
        self.catalogue = Catalogue(path)
        self._copies = copies
        self._pushed_generation = self.catalogue.generation
        log.info(
            "customer: catalogue generation %d recovered from %d suppliers",
            newest.generation,
            newest.n,
        )
        return True

    async def find_catalogue_copies(self) -> None:
        """After a start, learn which copies of the catalogue the suppliers hold, as the last
        run knew them: the next push then writes the slot without the newest copy, sends only
        the chunks they lack and deletes those only the overwritten copy used. When the newest
        is of this generation nothing is pushed at all. Nothing is learned when no supplier
        answered (at boot, before the network is up): they are asked again at the next round."""
        found, answered = await self._catalogue_copies(
            [row.idurl for row in self.catalogue.suppliers()]
        )
        if not answered:
            return
        self._copies = copies = offsite.Copies.found(found)
        newest = copies.newest
        if newest is None:
            return  # none there yet: a new account
        log.info("customer: catalogue generation %d found off-site", newest.generation)
        if newest.generation == self.catalogue.generation:
            self._pushed_generation = newest.generation
        elif newest.generation > self.catalogue.generation:
            # stored as it is, this catalogue would lose to that copy in a recovery
            log.warning(
                "customer: the suppliers hold a newer catalogue (generation %d) than this "
                "node's (%d), as after restoring this machine from an older backup of its own; "
                "this node's catalogue is stored off-site as the newest",
                newest.generation,
                self.catalogue.generation,
            )
            await asyncio.to_thread(self.catalogue.advance_generation, newest.generation)

    async def _catalogue_copies(
        self, suppliers: list[str]
    ) -> tuple[dict[int, offsite.Manifest], bool]:
        """The newest manifest in each slot that any of ``suppliers`` returns and that
        decrypts (a supplier that does not answer or holds none is passed over), and whether
        any of them answered at all."""
        catalogue_key = self.catalogue_key()
        found: dict[int, offsite.Manifest] = {}
        answered = False

        async def read_slot(supplier: str, slot: int) -> None:
            nonlocal answered
            try:
                data = await self.suppliers.get(
                    supplier, offsite.slot_id(catalogue_key, slot), offsite.MAX_MANIFEST
                )
                answered = True
                manifest = offsite.unseal(catalogue_key, slot, data)
            except (*REFUSED, offsite.ManifestRefused) as exc:
                answered = True  # it has none there, or not one that decrypts
                log.debug("customer: no catalogue copy %d from %s: %s", slot, supplier, exc)
                return
            except UNREACHABLE as exc:
                log.debug(
                    "customer: no answer for catalogue copy %d from %s: %s", slot, supplier, exc
                )
                return
            if slot not in found or found[slot].generation < manifest.generation:
                found[slot] = manifest

        await asyncio.gather(
            *(read_slot(s, slot) for s in suppliers for slot in range(offsite.SLOTS))
        )
        return found, answered

    async def _read_catalogue_copy(self, manifest: offsite.Manifest) -> bytes:
        parts = [
            await self._read_copy_chunk(manifest, chunk_id, size)
            for chunk_id, size in manifest.chunks
        ]
        data = b"".join(parts)
        if len(data) != manifest.size or hashlib.sha256(data).digest() != manifest.sha256:
            raise BackupError("the catalogue copy on the suppliers is not what was stored")
        return data

    async def _read_copy_chunk(
        self, manifest: offsite.Manifest, chunk_id: bytes, size: int
    ) -> bytes:
        """One chunk of a catalogue copy, from any k of the suppliers the manifest names."""
        keys = self.data_keys()

        async def fetch(index: int) -> bytes:
            supplier = manifest.suppliers[index]
            try:
                return await self.suppliers.get(
                    supplier, keys.fragment_id_of(chunk_id, index), size
                )
            except FAILED as exc:
                raise FragmentUnavailable(f"from {supplier}: {exc}") from None

        async def decode(fragments: dict[int, bytes]) -> bytes:
            return await asyncio.to_thread(codec.decode_chunk, keys, chunk_id, fragments)

        return await read_chunk(range(manifest.n), manifest.k, fetch, decode, chunk_id.hex())

    # -- chunks (ChunkPlacer) ---------------------------------------------------------------------

    async def store_chunk(self, plaintext: bytes) -> tuple[bytes, int]:
        """Store a chunk unless the catalogue has it. The plaintext is let go once it is encoded
        (the caller keeps no reference): a chunk waiting on its suppliers holds only its
        fragments."""
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
            hired: list[str] = []
            repairing = self.catalogue.knows_chunk(chunk_id)  # some fragments lost: only those
            if repairing:
                encoded = await self._encode_known(keys, chunk_id, plaintext)
            else:
                hired = await self.hired_suppliers()
                encoded = await asyncio.to_thread(
                    codec.encode_chunk, keys, plaintext, self.k, len(hired), chunk_id
                )
            del plaintext
            if repairing:
                sent = await self._put_missing(keys, chunk_id, encoded)
            else:
                sent = await self._put_new(keys, chunk_id, encoded, hired)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()
            raise
        finally:
            del self._storing[chunk_id]
        self.counters["chunks_sent"] += 1
        return chunk_id, sent

    async def _put_new(
        self, keys: codec.DataKeys, chunk_id: bytes, encoded: codec.EncodedChunk, hired: list[str]
    ) -> int:
        placed, checks = await self._put_fragments(keys, chunk_id, encoded, hired)
        placements = [
            (index, placed[index], keys.fragment_id_of(chunk_id, index))
            for index in range(len(placed))
        ]
        await asyncio.to_thread(
            self.catalogue.add_chunk,
            chunk_id,
            encoded.size,
            len(encoded.fragments[0]),
            self.k,
            len(placed),
            placements,
            digests=[digest for digest, _ in checks],
            challenges={index: challenges for index, (_, challenges) in enumerate(checks)},
        )
        return sum(len(fragment) for fragment in encoded.fragments)

    async def _put_fragments(
        self, keys: codec.DataKeys, chunk_id: bytes, encoded: codec.EncodedChunk, hired: list[str]
    ) -> tuple[list[str], list[tuple[bytes, list[Any]]]]:
        """Put fragment i on supplier i, all or nothing; returns the suppliers that took each
        fragment and each fragment's audit checks. A supplier that refuses (full, over quota, no
        longer taking this customer) is replaced once and the fragment goes to the new one."""
        checks = await asyncio.to_thread(lambda: [audit_checks(f) for f in encoded.fragments])
        placed = list(hired)

        async def put(index: int) -> None:
            fragment_id = keys.fragment_id_of(chunk_id, index)
            fragment, (digest, _) = encoded.fragments[index], checks[index]
            try:
                await self._put(placed[index], fragment_id, fragment, index, digest)
            except SupplierRefused as refusal:  # full, over quota, or we are not its customer
                log.warning("customer: %s; replacing it", refusal)
                try:
                    placed[index] = await self.replace_supplier(index, failed=placed[index])
                except ServiceError as exc:
                    raise BackupError(f"{refusal}, and {exc}") from None
                await self._put(placed[index], fragment_id, fragment, index, digest)

        await _all_or_nothing([put(index) for index in range(len(hired))])
        return placed, checks

    async def _put(
        self,
        supplier: str,
        fragment_id: bytes,
        data: bytes,
        position: int,
        sha256: bytes | None = None,
    ) -> None:
        try:
            await self.suppliers.put(supplier, fragment_id, data, sha256)
        except RequestRefused as exc:
            raise SupplierRefused(
                f"supplier {position} ({supplier}) refused a fragment: {exc}"
            ) from None
        except UNREACHABLE as exc:
            raise BackupError(
                f"supplier {position} ({supplier}) did not store a fragment: {exc}"
            ) from None

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
            except (*FAILED, codec.MalformedFragment) as exc:
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
        deleted = await asyncio.to_thread(self.catalogue.delete_path, remote)
        freed = await self.delete_chunks(deleted.released)
        return {"remote": remote, "files": deleted.files, "chunks_freed": freed}

    async def delete_chunks(self, chunks: list[Any]) -> int:
        """Delete the fragments of chunks nobody references any more, supplier by supplier;
        the chunks whose fragments are all gone are forgotten, the others retried later (at the
        next deletion) so that a supplier away now does not keep data for ever."""
        if self._uploads:  # a running upload may be about to reference one of them again
            return 0
        # a query per chunk: a directory's delete may free thousands, so off the event loop
        pending, by_supplier = await asyncio.to_thread(
            self._placed_fragments, {row.id for row in chunks}
        )
        done = pending - await self._delete_on_suppliers(by_supplier)
        await asyncio.to_thread(self.catalogue.forget_chunks, done)
        return len(done)

    def _placed_fragments(
        self, freed: set[bytes]
    ) -> tuple[set[bytes], dict[str, list[tuple[bytes, bytes]]]]:
        """The chunks to delete (``freed`` and those earlier deletions left unreferenced), and
        (chunk id, fragment id) of each of their placements, by supplier."""
        pending = freed | {row.id for row in self.catalogue.unreferenced_chunks()}
        by_supplier: dict[str, list[tuple[bytes, bytes]]] = {}
        for chunk_id in pending:
            for placement in self.catalogue.placements(chunk_id):
                by_supplier.setdefault(placement.supplier, []).append(
                    (chunk_id, placement.fragment_id)
                )
        return pending, by_supplier

    async def _delete_fragments(self, chunk_ids: list[bytes], suppliers: list[str]) -> None:
        """Delete every fragment of ``chunk_ids`` placed by position on ``suppliers`` (those
        not deleted now stay behind: the copies of the catalogue are not tracked further)."""
        keys = self.data_keys()
        await self._delete_on_suppliers(
            {
                supplier: [(c, keys.fragment_id_of(c, index)) for c in chunk_ids]
                for index, supplier in enumerate(suppliers)
            }
        )

    async def _delete_on_suppliers(
        self, by_supplier: dict[str, list[tuple[bytes, bytes]]]
    ) -> set[bytes]:
        """Delete (chunk id, fragment id) pairs supplier by supplier; the chunk ids of those a
        supplier did not delete."""
        failed: set[bytes] = set()
        for supplier, pairs in by_supplier.items():
            if not pairs:
                continue
            try:
                await self.suppliers.delete(supplier, [fragment_id for _, fragment_id in pairs])
            except FAILED as exc:
                log.info("customer: %s did not delete fragments (retried later): %s", supplier, exc)
                failed.update(chunk_id for chunk_id, _ in pairs)
        return failed

    # -- reporting --------------------------------------------------------------------------------

    def supplier_rows(self) -> list[dict[str, Any]]:
        """The hired suppliers by position: state (ok, unreachable, failing, replace), bytes of
        this node's fragments there, the last audit and the failures in a row."""
        used = self.catalogue.stored_bytes()
        policy, now = self.policy(), time.time()
        health = {h.position: h for h in self.catalogue.supplier_health()}
        return [
            {
                "position": row.position,
                "idurl": row.idurl,
                "state": policy.state(health[row.position], now).value,
                "quota": row.quota,
                "used": used.get(row.idurl, 0),
                "hired": row.hired_at,
                "last_seen": row.last_seen,
                "last_audit": row.last_audit,
                "failures": row.audit_failures,
            }
            for row in self.catalogue.suppliers()
        ]

    def consumed(self) -> dict[str, Any]:
        used = self.catalogue.stored_bytes()
        offsite_copy = self._copies.newest if self._copies is not None else None
        return {
            "suppliers": len(self.catalogue.suppliers()),
            "wanted": self.wanted,
            "k": self.k,
            "stored": sum(used.values()),
            "needed": self.needed_space,
            "catalogue_generation": self.catalogue.generation,
            "offsite_generation": offsite_copy.generation if offsite_copy else None,
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

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        if StatusSection.SUPPLIERS not in sections:
            return {}
        # the bytes stored on each supplier are summed over every placement: not on the loop
        return {StatusSection.SUPPLIERS.value: await asyncio.to_thread(self.supplier_rows)}

    def status_text(self) -> str:
        return (
            f"customer: {len(self.catalogue.suppliers())} of {self.wanted} suppliers, "
            f"{self.k}-of-{self.wanted} fragments"
            + (f" ({self._last_error})" if self._last_error else "")
        )


def audit_checks(fragment: bytes) -> tuple[bytes, list[Any]]:
    """What audits of a fragment need once it has left: its SHA-256 and a few challenges."""
    return hashlib.sha256(fragment).digest(), make_challenges(fragment, CHALLENGES_PER_FRAGMENT)


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
