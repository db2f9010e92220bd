"""The routing table keeps the paper's invariants and asks for pings instead of sending them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bitdust.dht.routing import PingOldest, RoutingTable, distance, id_int
from bitdust.dht.wire import Contact

OWN = bytes(20)


def contact(first_byte: int, rest: int = 0) -> Contact:
    node_id = bytes([first_byte]) + rest.to_bytes(19, "big")
    return Contact(node_id, "10.0.0.1", 1000 + first_byte * 16 + rest)


def test_xor_distance() -> None:
    a, b = b"\x01" + bytes(19), b"\x03" + bytes(19)
    assert distance(a, b) == distance(b, a) == 2 << 152
    assert distance(a, a) == 0


def test_own_id_is_never_added() -> None:
    table = RoutingTable(OWN, k=4, now=0)
    assert table.add(Contact(OWN, "10.0.0.1", 1)) is None
    assert len(table) == 0


def test_bucket_holding_own_id_splits_when_full() -> None:
    table = RoutingTable(OWN, k=2, now=0)
    for c in (contact(0x80), contact(0x81), contact(0x01), contact(0x02)):
        assert table.add(c) is None
    assert len(table) == 4
    assert len(table.buckets) > 1
    for bucket in table.buckets:
        assert len(bucket.contacts) <= 2
        assert all(bucket.covers(id_int(i)) for i in bucket.contacts)


def test_full_far_bucket_asks_to_ping_the_least_recently_seen() -> None:
    table = RoutingTable(OWN, k=2, now=0)
    table.add(contact(0x01))  # keeps the near half alive and split-able
    table.add(contact(0x01, 1))
    a, b, c = contact(0x80), contact(0x90), contact(0xA0)
    table.add(a)
    table.add(b)
    table.add(a)  # a is seen again: b is now the oldest
    action = table.add(c)
    assert action == PingOldest(oldest=b, candidate=c)
    assert table.get(c.node_id) is None
    table.remove(b.node_id)  # b did not answer the ping
    assert table.get(c.node_id) == c


def test_failures_evict_after_the_limit() -> None:
    table = RoutingTable(OWN, k=4, now=0, max_failures=2)
    a = contact(0x80)
    table.add(a)
    assert not table.fail(a.node_id)
    assert table.fail(a.node_id)
    assert table.get(a.node_id) is None


def test_hearing_from_a_contact_resets_its_failures() -> None:
    table = RoutingTable(OWN, k=4, now=0, max_failures=2)
    a = contact(0x80)
    table.add(a)
    table.fail(a.node_id)
    table.add(a)
    assert not table.fail(a.node_id)


def test_known_id_from_a_new_address_must_first_beat_a_ping() -> None:
    table = RoutingTable(OWN, k=4, now=0)
    a = contact(0x80)
    moved = Contact(a.node_id, "10.0.0.2", 2000)
    table.add(a)
    assert table.add(moved) == PingOldest(oldest=a, candidate=moved)
    assert table.get(a.node_id) == a
    table.remove(a.node_id)
    assert table.get(a.node_id) == moved


node_ids = st.binary(min_size=20, max_size=20)


@given(st.lists(node_ids, min_size=1, max_size=200), node_ids)
def test_closest_matches_brute_force_over_held_contacts(ids: list[bytes], target: bytes) -> None:
    table = RoutingTable(OWN, k=8, now=0)
    for i, node_id in enumerate(ids):
        table.add(Contact(node_id, "10.0.0.1", 1000 + i % 60000))
    held = [c.node_id for c in table]
    assert len(held) == len(set(held))
    expected = sorted(held, key=lambda i: distance(i, target))[:8]
    assert [c.node_id for c in table.closest(target, 8)] == expected


def test_a_nodes_k_nearest_are_kept_even_outside_its_own_bucket() -> None:
    rng = random.Random(7)
    ids = [rng.randbytes(20) for _ in range(500)]
    table = RoutingTable(OWN, k=4, now=0)
    for i, node_id in enumerate(ids):
        table.add(Contact(node_id, "10.0.0.1", 1000 + i))
    nearest = sorted(ids, key=lambda i: distance(i, OWN))[:4]
    assert [c.node_id for c in table.closest(OWN, 4)] == nearest


def test_stale_buckets_are_those_without_a_recent_lookup() -> None:
    table = RoutingTable(OWN, k=1, now=0)
    table.add(contact(0x80))
    table.add(contact(0x01))
    assert len(table.buckets) == 2
    table.touch(contact(0x80).node_id, now=500)
    stale = table.stale_buckets(now=600, interval=600)
    assert len(stale) == 1 and stale[0].covers(id_int(contact(0x01).node_id))


def test_one_address_cannot_hold_many_ids() -> None:
    table = RoutingTable(OWN, k=8, now=0)
    table.add(Contact(b"\x80" + bytes(19), "10.6.6.6", 1))
    for i in range(50):
        table.add(Contact(bytes([i + 1]) * 20, "10.6.6.6", 1))
    assert len(table) == 1
    table.add(Contact(bytes([200]) * 20, "10.6.6.6", 2))  # another port is another endpoint
    assert len(table) == 2
