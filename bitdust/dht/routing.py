"""Kademlia routing table: 160-bit ids, XOR distance, k-buckets (paper §2.2, §2.4, §4.1).

The table only keeps state; it never sends or schedules anything. When a full bucket meets a new
contact it answers with a ``PingOldest`` action and parks the newcomer in the bucket's replacement
cache; the protocol pings the oldest contact and calls ``remove`` if it stays silent (least-recently
seen eviction, which favours long-lived nodes). It only ever holds peers that spoke to us directly.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bitdust.dht.wire import ID_SIZE, Contact

ID_BITS = ID_SIZE * 8
ID_SPACE = 1 << ID_BITS


def id_int(node_id: bytes) -> int:
    return int.from_bytes(node_id, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR metric between two ids (paper §2.1)."""
    return id_int(a) ^ id_int(b)


def _bucket_floor(bucket: KBucket, target: int) -> int:
    """The smallest XOR distance from ``target`` to any id in the bucket's aligned range."""
    width = (bucket.hi - bucket.lo).bit_length() - 1
    return ((bucket.lo ^ target) >> width) << width


@dataclass(frozen=True, slots=True)
class PingOldest:
    """Action: ping ``oldest``; if it does not answer, ``remove`` it and ``candidate`` moves in."""

    oldest: Contact
    candidate: Contact


class KBucket:
    """Up to k contacts whose ids fall in ``[lo, hi)``, least recently seen first.

    Plain dicts keep that order (re-inserting moves a key to the end): an OrderedDict's linked
    list costs about 50 bytes more per entry, in every bucket of every node."""

    __slots__ = ("contacts", "failures", "hi", "last_lookup", "lo", "replacements", "seen")

    def __init__(self, lo: int, hi: int, now: float) -> None:
        self.lo = lo
        self.hi = hi
        self.contacts: dict[bytes, Contact] = {}
        self.replacements: dict[bytes, Contact] = {}
        self.failures: dict[bytes, int] = {}
        self.seen: dict[bytes, float] = {}
        self.last_lookup = now

    def covers(self, value: int) -> bool:
        return self.lo <= value < self.hi

    def random_id(self, rng: random.Random) -> bytes:
        return rng.randrange(self.lo, self.hi).to_bytes(ID_SIZE, "big")


class RoutingTable:
    """The k-bucket tree of one node, flattened into a sorted list of id ranges."""

    def __init__(
        self,
        node_id: bytes,
        k: int,
        now: float,
        replacement_size: int = 8,
        max_failures: int = 2,
        ping_after: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self._own = id_int(node_id)
        self.k = k
        self.replacement_size = replacement_size
        self.max_failures = max_failures
        self.ping_after = ping_after
        self.buckets: list[KBucket] = [KBucket(0, ID_SPACE, now)]
        self._los: list[int] = [0]
        # One node id per address: a peer cannot fill our table with ids it invents.
        self._by_addr: dict[tuple[str, int], bytes] = {}

    def __len__(self) -> int:
        return sum(len(b.contacts) for b in self.buckets)

    def __iter__(self) -> Iterator[Contact]:
        for bucket in self.buckets:
            yield from bucket.contacts.values()

    def bucket_for(self, node_id: bytes) -> KBucket:
        return self.buckets[bisect.bisect_right(self._los, id_int(node_id)) - 1]

    def get(self, node_id: bytes) -> Contact | None:
        return self.bucket_for(node_id).contacts.get(node_id)

    def add(self, contact: Contact, now: float = 0.0) -> PingOldest | None:
        """Record that ``contact`` was heard from; may ask for the bucket's oldest to be pinged.

        No ping is asked for while even the oldest contact was heard from within ``ping_after``
        seconds: it is evidently alive (paper §4.1 defers such probes).
        """
        if contact.node_id == self.node_id:
            return None
        holder = self._by_addr.get(contact.addr)
        if holder is not None and holder != contact.node_id:
            return None
        while True:
            bucket = self.bucket_for(contact.node_id)
            known = bucket.contacts.get(contact.node_id)
            if known is not None:
                if known.addr != contact.addr:
                    # Same id from a new address: keep the proven one until it fails a ping.
                    self._park(bucket, contact)
                    return PingOldest(known, contact)
                bucket.contacts[contact.node_id] = bucket.contacts.pop(contact.node_id)
                bucket.failures.pop(contact.node_id, None)
                bucket.seen[contact.node_id] = now
                return None
            if len(bucket.contacts) < self.k:
                self._insert(bucket, contact)
                bucket.seen[contact.node_id] = now
                return None
            if bucket.hi - bucket.lo > 1 and (
                bucket.covers(self._own) or self._among_nearest(contact.node_id)
            ):
                self._split(bucket)
                continue
            self._park(bucket, contact)
            oldest = next(iter(bucket.contacts.values()))
            if now - bucket.seen.get(oldest.node_id, float("-inf")) < self.ping_after:
                return None
            return PingOldest(oldest, contact)

    def _among_nearest(self, node_id: bytes) -> bool:
        """Would ``node_id`` be one of our k nearest? Those are kept even in a bucket that does
        not hold our own id (paper §4.2), or lookups near us could miss a neighbour."""
        nearest = self.closest(self.node_id, self.k)
        if len(nearest) < self.k:
            return True
        return id_int(node_id) ^ self._own < id_int(nearest[-1].node_id) ^ self._own

    def _insert(self, bucket: KBucket, contact: Contact) -> None:
        bucket.contacts[contact.node_id] = contact
        bucket.replacements.pop(contact.node_id, None)
        self._by_addr[contact.addr] = contact.node_id

    def _park(self, bucket: KBucket, contact: Contact) -> None:
        bucket.replacements.pop(contact.node_id, None)
        bucket.replacements[contact.node_id] = contact
        while len(bucket.replacements) > self.replacement_size:
            del bucket.replacements[next(iter(bucket.replacements))]

    def _split(self, bucket: KBucket) -> None:
        mid = (bucket.lo + bucket.hi) // 2
        low = KBucket(bucket.lo, mid, bucket.last_lookup)
        high = KBucket(mid, bucket.hi, bucket.last_lookup)
        for source, attr in ((bucket.contacts, "contacts"), (bucket.replacements, "replacements")):
            for node_id, c in source.items():
                target = low if id_int(node_id) < mid else high
                getattr(target, attr)[node_id] = c
        for node_id, count in bucket.failures.items():
            (low if id_int(node_id) < mid else high).failures[node_id] = count
        for node_id, when in bucket.seen.items():
            (low if id_int(node_id) < mid else high).seen[node_id] = when
        i = self.buckets.index(bucket)
        self.buckets[i : i + 1] = [low, high]
        self._los[i : i + 1] = [low.lo, high.lo]

    def remove(self, node_id: bytes) -> None:
        """Drop a contact; the freshest replacement candidate takes its place."""
        bucket = self.bucket_for(node_id)
        bucket.failures.pop(node_id, None)
        gone = bucket.contacts.pop(node_id, None)
        bucket.seen.pop(node_id, None)
        if gone is None:
            bucket.replacements.pop(node_id, None)
            return
        del self._by_addr[gone.addr]
        for candidate in reversed(bucket.replacements.values()):
            if candidate.addr not in self._by_addr:
                self._insert(bucket, candidate)
                return

    def fail(self, node_id: bytes) -> bool:
        """Count an unanswered RPC; evict after ``max_failures`` in a row (sooner with a spare)."""
        bucket = self.bucket_for(node_id)
        if node_id not in bucket.contacts:
            bucket.replacements.pop(node_id, None)
            return False
        count = bucket.failures.get(node_id, 0) + 1
        bucket.failures[node_id] = count
        if count >= self.max_failures or bucket.replacements:
            self.remove(node_id)
            return True
        return False

    def closest(self, target: bytes, count: int, exclude: Iterable[bytes] = ()) -> list[Contact]:
        """The ``count`` known contacts nearest to ``target`` by XOR, nearest first.

        Buckets are disjoint aligned ranges, so all ids in one bucket are nearer to ``target``
        than all ids in a bucket further along this order: only the first few buckets are read.
        """
        skip = set(exclude)
        t = id_int(target)
        order = sorted(self.buckets, key=lambda b: _bucket_floor(b, t))
        pool: list[tuple[int, Contact]] = []
        for bucket in order:
            if len(pool) >= count:
                break
            pool.extend(
                (id_int(node_id) ^ t, c)
                for node_id, c in bucket.contacts.items()
                if node_id not in skip
            )
        pool.sort(key=lambda pair: pair[0])
        return [c for _, c in pool[:count]]

    def touch(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` ran: its bucket does not need a refresh for a while."""
        self.bucket_for(target).last_lookup = now

    def stale_buckets(self, now: float, interval: float) -> list[KBucket]:
        """Buckets no lookup has gone through for ``interval`` seconds (paper §2.3 refresh)."""
        return [b for b in self.buckets if now - b.last_lookup >= interval]
