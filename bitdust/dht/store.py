"""The records a DHT node holds and publishes, and the policy that admits them.

``RecordStore`` keeps records in memory and enforces the storage policy (one record per key and
signer, newer replaces older, bounded per node, per key, per signer and per source IP). Every
change goes to the ``Persistence`` it is given; records read back from it are checked again:
a file is outside input too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bitdust.dht.persistence import Persistence, Table
from bitdust.dht.ratelimit import network_of
from bitdust.dht.records import Record, RecordChecker
from bitdust.dht.refusals import Refusal
from bitdust.dht.routing import id_int
from bitdust.dht.settings import DHTSettings


@dataclass(slots=True)
class Held:
    """A record this node holds for the network, with who sent it and when it was last stored."""

    record: Record
    origin_ip: str
    refreshed: float


class RecordStore:
    """Records held and published by one node, under the per-node and per-origin limits."""

    def __init__(self, settings: DHTSettings, persistence: Persistence, node_id: bytes) -> None:
        self.settings = settings
        self.persistence = persistence
        self._node_id = id_int(node_id)
        self._held: dict[bytes, dict[bytes, Held]] = {}
        self._published: dict[tuple[bytes, bytes], Record] = {}
        self.total_bytes = 0
        self._count = 0
        self._by_signer: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
        # Per source network (/24): [records, bytes], and the records themselves for eviction.
        self._by_network: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._network_held: dict[str, dict[tuple[bytes, bytes], Held]] = defaultdict(dict)
        self.evicted = 0

    def __len__(self) -> int:
        return self._count

    def load(self, checker: RecordChecker, wall_now: float, now: float) -> int:
        """Read kept records back, keeping only those still valid; returns how many."""
        for table in Table:
            for record, origin_ip in self.persistence.load_records(table):
                if checker.check(record, wall_now) is not None:
                    self.persistence.delete_record(table, record.key, record.public_key)
                elif table is Table.PUBLISHED:
                    self._published[(record.key, record.public_key)] = record
                elif self._admit(record, origin_ip, now) is not None:
                    self.persistence.delete_record(table, record.key, record.public_key)
        return self._count + len(self._published)

    def put(self, record: Record, origin_ip: str, now: float) -> Refusal | None:
        """Hold a record whose signature and times were already checked; None or a refusal."""
        reason = self._admit(record, origin_ip, now)
        if reason is None:
            self.persistence.put_record(Table.HELD, record, origin_ip)
        return reason

    def _admit(self, record: Record, origin_ip: str, now: float) -> Refusal | None:
        s = self.settings
        per_key = self._held.get(record.key, {})
        old = per_key.get(record.public_key)
        if old is not None:
            if record.created < old.record.created:
                return Refusal.OLDER
            if record.created == old.record.created:
                if record.signature != old.record.signature:
                    return Refusal.CONFLICT
                old.refreshed = now
                return None
        elif record.name is None:  # a shared key; the one owned record of a key always fits
            network = network_of(origin_ip)
            same = sum(network_of(h.origin_ip) == network for h in per_key.values())
            if same >= s.max_records_per_key_per_network:
                return Refusal.KEY_NETWORK_FULL
            if len(per_key) >= s.max_records_per_key:
                return Refusal.KEY_FULL
        signer = self._by_signer.get(record.public_key, (0, 0))
        network = network_of(origin_ip)
        usage = self._by_network.get(network, (0, 0))
        old_size = old.record.size if old else 0
        same_network = old is not None and network_of(old.origin_ip) == network
        fresh = 0 if old else 1
        network_fresh = 0 if same_network else 1
        network_old = old_size if same_network else 0
        if signer[0] + fresh > s.max_records_per_signer:
            return Refusal.SIGNER_RECORDS
        if signer[1] - old_size + record.size > s.max_bytes_per_signer:
            return Refusal.SIGNER_BYTES
        if usage[0] + network_fresh > s.max_records_per_network:
            return Refusal.NETWORK_RECORDS
        if usage[1] - network_old + record.size > s.max_bytes_per_network:
            return Refusal.NETWORK_BYTES
        extra_records = self._count + fresh - s.max_records
        extra_bytes = self.total_bytes - old_size + record.size - s.max_bytes
        if (extra_records > 0 or extra_bytes > 0) and not self._make_room(
            network, record.size, extra_records, extra_bytes, old
        ):
            return Refusal.STORE_FULL
        if old is not None:
            self._forget(old)
        held = Held(record, origin_ip, now)
        self._account(record, origin_ip, +1)
        self._held.setdefault(record.key, {})[record.public_key] = held
        self._network_held[network][(record.key, record.public_key)] = held
        return None

    def _make_room(
        self, network: str, size: int, records: int, nbytes: int, keep: Held | None
    ) -> bool:
        """Evict records so that a newcomer fits a full store, if its network holds less than
        the network holding the most: that one loses its records furthest from this node's id
        (Kademlia nodes keep the keys close to them). A full store thus keeps room for networks
        that have not used their share, and whoever filled it pays."""
        heaviest = max(self._by_network, key=lambda n: self._by_network[n][1], default=None)
        if heaviest is None or heaviest == network:
            return False
        if self._by_network[heaviest][1] <= self._by_network.get(network, (0, 0))[1] + size:
            return False
        victims = sorted(
            (h for h in self._network_held[heaviest].values() if h is not keep),
            key=lambda h: id_int(h.record.key) ^ self._node_id,
            reverse=True,
        )
        chosen: list[Held] = []
        for held in victims:
            if records <= 0 and nbytes <= 0:
                break
            chosen.append(held)
            records -= 1
            nbytes -= held.record.size
        if records > 0 or nbytes > 0:
            return False
        for held in chosen:
            self._forget(held)
            self.persistence.delete_record(Table.HELD, held.record.key, held.record.public_key)
            self.evicted += 1
        return True

    def _account(self, record: Record, origin_ip: str, sign: int) -> None:
        self._count += sign
        self.total_bytes += sign * record.size
        network = network_of(origin_ip)
        for bucket, name in ((self._by_signer, record.public_key), (self._by_network, network)):
            entry = bucket[name]
            entry[0] += sign
            entry[1] += sign * record.size
            if entry[0] == 0:
                del bucket[name]

    def _forget(self, held: Held) -> None:
        record = held.record
        per_key = self._held[record.key]
        del per_key[record.public_key]
        if not per_key:
            del self._held[record.key]
        network = network_of(held.origin_ip)
        del self._network_held[network][(record.key, record.public_key)]
        if not self._network_held[network]:
            del self._network_held[network]
        self._account(record, held.origin_ip, -1)

    def holds(self, record: Record) -> bool:
        """This very record (every field equal) is held already: its signature was checked."""
        held = self._held.get(record.key, {}).get(record.public_key)
        return held is not None and held.record == record

    def get(self, key: bytes, wall_now: float) -> list[Record]:
        """Unexpired records under ``key``, newest first."""
        found = [h.record for h in self._held.get(key, {}).values() if h.record.expires > wall_now]
        found += [r for (k, _), r in self._published.items() if k == key and r.expires > wall_now]
        unique = {r.public_key: r for r in sorted(found, key=lambda r: r.created)}
        return sorted(unique.values(), key=lambda r: r.created, reverse=True)

    def held(self) -> list[Held]:
        return [h for per_key in self._held.values() for h in per_key.values()]

    def publish(self, record: Record) -> None:
        """Remember a record this node published itself, so it republishes it until expiry."""
        self._published[(record.key, record.public_key)] = record
        self.persistence.put_record(Table.PUBLISHED, record)

    def published(self) -> list[Record]:
        return list(self._published.values())

    def expire(self, wall_now: float) -> int:
        """Drop expired records (held and published); returns how many went."""
        gone = [h for h in self.held() if h.record.expires <= wall_now]
        for held in gone:
            self._forget(held)
            self.persistence.delete_record(Table.HELD, held.record.key, held.record.public_key)
        old = [k for k, r in self._published.items() if r.expires <= wall_now]
        for k in old:
            del self._published[k]
            self.persistence.delete_record(Table.PUBLISHED, *k)
        return len(gone) + len(old)
