"""DHTNode cores talking through copied datagrams and a fake clock: no sockets, no event loop."""

from __future__ import annotations

import dataclasses
import random

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from bitdust.dht.events import (
    BootstrapDone,
    BootstrapFailed,
    JoinRetry,
    LookupDone,
    PingDone,
    StoreDone,
    ValueFound,
)
from bitdust.dht.joining import JoinState
from bitdust.dht.persistence import MemoryPersistence, Table
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import dht_key, sign_record
from bitdust.dht.refusals import RecordRefused, Refusal
from bitdust.dht.schemes import RSA_PSS, STANDARD_VERIFIERS, Ed25519Signer, RsaSigner
from bitdust.dht.settings import DHTSettings
from bitdust.dht.wire import VERSION, MalformedMessage, Message, MsgType, decode, encode

WALL = 1_750_000_000.0
SETTINGS = DHTSettings(k=4, alpha=2, rpc_timeout=5.0)


class Net:
    """Copies datagrams between cores; the clock moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0
        self.nodes: dict[tuple[str, int], DHTNode] = {}
        self.rng = random.Random(1)

    def node(self, host: str, settings: DHTSettings = SETTINGS) -> DHTNode:
        node = DHTNode(
            self.rng.randbytes(20),
            settings,
            MemoryPersistence(),
            Ed25519Signer.generate(),
            verifiers=STANDARD_VERIFIERS,
            now=self.now,
            wall_offset=WALL,
            rng=random.Random(host),
        )
        self.nodes[(host, 14441)] = node
        return node

    def addr(self, node: DHTNode) -> tuple[str, int]:
        return next(a for a, n in self.nodes.items() if n is node)

    def deliver(self, rounds: int = 50) -> None:
        """Pass datagrams until every core is quiet (lost if nobody listens at the address)."""
        for _ in range(rounds):
            moved = False
            for src, node in list(self.nodes.items()):
                for data, dst in node.datagrams_to_send():
                    moved = True
                    if dst in self.nodes:
                        self.nodes[dst].receive_datagram(data, src, self.now)
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes.values():
            node.handle_timer(self.now)
        self.deliver()

    def events(self, node: DHTNode) -> list[object]:
        out = []
        while (event := node.next_event()) is not None:
            out.append(event)
        return out


@pytest.fixture
def net() -> Net:
    return Net()


def joined(net: Net, count: int) -> list[DHTNode]:
    nodes = [net.node(f"10.0.0.{i + 1}") for i in range(count)]
    for node in nodes[1:]:
        op = node.bootstrap([net.addr(nodes[0])], net.now)
        net.deliver()
        assert net.events(node) == [BootstrapDone(op, len(node.table))]
    return nodes


def test_ping_answers_and_both_sides_learn_each_other(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    op = a.ping(net.addr(b), net.now)
    net.deliver()
    [event] = net.events(a)
    assert isinstance(event, PingDone) and event.contact is not None
    assert event.contact.node_id == b.node_id
    assert a.table.get(b.node_id) is not None and b.table.get(a.node_id) is not None
    assert event.op_id == op


def test_ping_to_a_silent_address_times_out(net: Net) -> None:
    a = net.node("10.0.0.1")
    op = a.ping(("10.9.9.9", 14441), net.now)
    net.deliver()
    assert net.events(a) == []
    assert a.get_timer() == pytest.approx(net.now + SETTINGS.rpc_timeout)
    net.advance(SETTINGS.rpc_timeout - 0.1)
    assert net.events(a) == []
    net.advance(0.2)
    assert net.events(a) == [PingDone(op, None)]
    assert a.counters["timeouts"] == 1


def test_bootstrap_through_a_dead_seed_fails_after_the_timeout(net: Net) -> None:
    a = net.node("10.0.0.1")
    op = a.bootstrap([("10.9.9.9", 14441)], net.now)
    net.deliver()
    net.advance(SETTINGS.rpc_timeout + 1)
    assert net.events(a) == [BootstrapFailed(op)]


def test_lookup_finds_a_node_the_asker_never_met(net: Net) -> None:
    a, seed, c = net.node("10.0.0.1"), net.node("10.0.0.2"), net.node("10.0.0.3")
    for node in (a, c):
        node.bootstrap([net.addr(seed)], net.now)
        net.deliver()
        net.events(node)
    a.table.remove(c.node_id)  # a learnt c while joining; forget it to force an iterative lookup
    assert a.table.get(c.node_id) is None
    op = a.find_node(c.node_id, net.now)
    net.deliver()
    [event] = net.events(a)
    assert isinstance(event, LookupDone) and event.op_id == op
    assert event.nodes[0].node_id == c.node_id
    assert event.nodes[0].addr == net.addr(c)


def test_store_then_get_from_another_node(net: Net) -> None:
    nodes = joined(net, 6)
    publisher, reader = nodes[1], nodes[5]
    record = publisher.sign(dht_key("hello"), b"world", net.now)
    op = publisher.set_value(record, net.now)
    net.deliver()
    [done] = net.events(publisher)
    assert done == StoreDone(op, record.key, SETTINGS.k)
    holders = [n for n in nodes if n.store.get(record.key, WALL + net.now) and n is not publisher]
    assert len(holders) == SETTINGS.k
    op = reader.get_value(record.key, net.now)
    net.deliver()
    [found] = net.events(reader)
    assert isinstance(found, ValueFound) and found.records == (record,)


def test_get_of_a_missing_key_reports_no_records(net: Net) -> None:
    nodes = joined(net, 4)
    op = nodes[2].get_value(dht_key("nothing here"), net.now)
    net.deliver()
    [found] = net.events(nodes[2])
    assert found.op_id == op and found.records == ()


def test_reply_from_a_wrong_address_is_ignored(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    op = a.ping(net.addr(b), net.now)
    [(request, _)] = a.datagrams_to_send()
    b.receive_datagram(request, net.addr(a), net.now)
    [(reply, _)] = b.datagrams_to_send()
    a.receive_datagram(reply, ("10.0.0.66", 14441), net.now)  # right id, wrong source
    assert a.counters["unmatched"] == 1 and net.events(a) == []
    a.receive_datagram(reply, net.addr(b), net.now)
    assert [e.op_id for e in net.events(a)] == [op]
    a.receive_datagram(reply, net.addr(b), net.now)  # a replay finds nothing pending
    assert a.counters["unmatched"] == 2


def test_reply_with_an_unknown_request_id_is_ignored(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    a.ping(net.addr(b), net.now)
    a.datagrams_to_send()
    fake = encode(Message(MsgType.PONG, b"x" * 20, b.node_id))
    a.receive_datagram(fake, net.addr(b), net.now)
    assert a.counters["unmatched"] == 1 and net.events(a) == []


@given(st.binary(max_size=600))
def test_garbage_datagrams_are_counted_never_raised(data: bytes) -> None:
    node = Net().node("10.0.0.1")
    node.receive_datagram(data, ("10.0.0.2", 1), 0.0)
    try:
        decode(data)
    except MalformedMessage:
        assert node.counters["malformed"] == 1
        assert node.datagrams_to_send() == []


def test_forged_store_is_refused(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    good = a.sign(dht_key("x"), b"value", net.now)
    forged = dataclasses.replace(good, value=b"evil")
    b.receive_datagram(
        encode(Message(MsgType.STORE, b"r" * 20, a.node_id, records=(forged,))),
        net.addr(a),
        net.now,
    )
    [(reply, _)] = b.datagrams_to_send()
    answer = decode(reply)
    assert answer.kind is MsgType.STORED and not answer.ok
    assert answer.reason == "invalid signature"
    assert b.counters["invalid_signature"] == 1 and len(b.store) == 0


def test_forged_records_in_a_values_reply_are_dropped(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    a.ping(net.addr(b), net.now)
    net.deliver()
    net.events(a)
    key = dht_key("target")
    good = b.sign(key, b"real", net.now)
    other_key = b.sign(dht_key("elsewhere"), b"moved", net.now)
    forged = dataclasses.replace(good, value=b"fake")
    op = a.get_value(key, net.now)
    [(request, _)] = a.datagrams_to_send()
    rid = decode(request).rid
    reply = Message(MsgType.VALUES, rid, b.node_id, records=(forged, other_key, good))
    a.receive_datagram(encode(reply), net.addr(b), net.now)
    [found] = net.events(a)
    assert found == ValueFound(op, key, (good,), 1, 1)
    assert a.counters["invalid_signature"] == 1 and a.counters["bad_record"] == 1


def test_loopback_contacts_from_a_public_peer_are_dropped(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    a.ping(net.addr(b), net.now)
    net.deliver()
    net.events(a)
    op = a.find_node(b"t" * 20, net.now)
    [(request, _)] = a.datagrams_to_send()
    evil = Message(
        MsgType.NODES,
        decode(request).rid,
        b.node_id,
        contacts=(
            dataclasses.replace(a.table.get(b.node_id), node_id=b"z" * 20, host="127.0.0.1"),
        ),
    )
    a.receive_datagram(encode(evil), net.addr(b), net.now)
    assert a.datagrams_to_send() == []  # nothing aimed at our own host
    assert a.counters["bad_contacts"] == 1
    assert [e.op_id for e in net.events(a)] == [op]


def test_request_floods_from_one_address_are_rate_limited(net: Net) -> None:
    settings = SETTINGS.with_changes(requests_per_second_per_ip=10, request_burst_per_ip=20)
    a = net.node("10.0.0.1", settings)
    for i in range(500):
        ping = Message(MsgType.PING, i.to_bytes(20, "big"), bytes([i % 250 + 1]) * 20)
        a.receive_datagram(encode(ping), ("10.6.6.6", 1), net.now)
    assert len(a.datagrams_to_send()) <= 40  # replies plus eviction pings, nowhere near 500
    assert a.counters["rate_limited"] == 480
    net.now += 1.0
    a.receive_datagram(
        encode(Message(MsgType.PING, b"q" * 20, b"w" * 20)), ("10.6.6.6", 1), net.now
    )
    assert a.counters["rate_limited"] == 480  # tokens came back with time


def test_pending_rpcs_are_bounded(net: Net) -> None:
    a = net.node("10.0.0.1", SETTINGS.with_changes(max_pending=3))
    ops = [a.ping(("10.9.9.9", 1000 + i), net.now) for i in range(5)]
    assert len(a._pending) == 3 and a.counters["pending_full"] == 2
    assert net.events(a) == [PingDone(ops[3], None), PingDone(ops[4], None)]


def test_records_expire_at_their_time(net: Net) -> None:
    nodes = joined(net, 3)
    record = nodes[0].sign(dht_key("short"), b"lived", net.now, age=120)
    nodes[0].set_value(record, net.now)
    net.deliver()
    assert all(len(n.store) == 1 for n in nodes[1:])
    for _ in range(3):
        net.advance(SETTINGS.maintenance_interval)
    assert all(len(n.store) == 0 and not n.store.published() for n in nodes)
    op = nodes[2].get_value(record.key, net.now)
    net.deliver()
    assert net.events(nodes[2]) == [ValueFound(op, record.key, (), 1, 2)]


def test_republish_reaches_a_node_that_joined_later(net: Net) -> None:
    settings = SETTINGS.with_changes(republish_interval=600.0, maintenance_interval=60.0)
    nodes = [net.node(f"10.0.0.{i}", settings) for i in (1, 2)]
    nodes[1].bootstrap([net.addr(nodes[0])], net.now)
    net.deliver()
    record = nodes[0].sign(dht_key("kept"), b"alive", net.now)
    nodes[0].set_value(record, net.now)
    net.deliver()
    late = net.node("10.0.0.3", settings)
    late.bootstrap([net.addr(nodes[1])], net.now)
    net.deliver()
    assert len(late.store) == 0
    for _ in range(11):
        net.advance(60.0)
    assert late.store.get(record.key, WALL + net.now) == [record]


def test_idle_buckets_are_refreshed_with_a_lookup(net: Net) -> None:
    settings = SETTINGS.with_changes(refresh_interval=300.0, maintenance_interval=60.0)
    a, b = net.node("10.0.0.1", settings), net.node("10.0.0.2", settings)
    a.ping(net.addr(b), net.now)
    net.deliver()
    find_nodes_before = b.counters["datagrams_in"]
    net.advance(240.0)
    assert b.counters["datagrams_in"] == find_nodes_before
    net.advance(120.0)
    assert b.counters["datagrams_in"] > find_nodes_before


def test_own_records_signed_with_unknown_schemes_are_refused_locally(net: Net) -> None:
    a = net.node("10.0.0.1")
    record = sign_record(a.signer, dht_key("x"), b"v", int(WALL + net.now), 60)
    with pytest.raises(RecordRefused, match="invalid signature") as refused:
        a.set_value(dataclasses.replace(record, scheme="nope"), net.now)
    assert refused.value.refusal is Refusal.INVALID_SIGNATURE


def test_stats_report_contacts_buckets_and_items(net: Net) -> None:
    nodes = joined(net, 5)
    stats = nodes[0].stats()
    assert stats["contacts"] == len(nodes[0].table) == 4
    assert stats["buckets"] == len(nodes[0].table.buckets)
    assert stats["items"] == 0
    assert isinstance(stats["counters"], dict)


def test_messages_from_our_own_id_are_dropped(net: Net) -> None:
    a = net.node("10.0.0.1")
    a.receive_datagram(
        msgpack.packb({"v": VERSION, "t": 1, "i": b"r" * 20, "n": a.node_id}),
        ("10.0.0.2", 1),
        net.now,
    )
    assert a.counters["from_self"] == 1 and a.datagrams_to_send() == []


def test_join_retries_with_capped_back_off_in_the_core_until_a_seed_appears(net: Net) -> None:
    """The retry policy is the core's, so the simulator and this fake clock see it."""
    settings = SETTINGS.with_changes(join_retry_initial=2.0, join_retry_max=8.0)
    a = net.node("10.0.0.1", settings)
    a.join([("10.0.0.2", 14441)], net.now)
    net.deliver()
    retries: list[float] = []
    while len(retries) < 4:  # each attempt: its timeout, then the back-off
        net.advance(a.get_timer() - net.now)
        retries += [e.delay for e in net.events(a) if isinstance(e, JoinRetry)]
    assert retries == [2.0, 4.0, 8.0, 8.0] and not a.joined
    assert a.joining.describe(net.now) == "no known node answered 4 times, retry in 8s"
    seed = net.node("10.0.0.2", settings)
    seed.join([], net.now)  # genesis
    net.advance(a.get_timer() - net.now)
    net.advance(settings.rpc_timeout)
    assert a.joined and a.table.get(seed.node_id) is not None
    assert any(isinstance(e, BootstrapDone) for e in net.events(a))
    assert a.joining.state is JoinState.JOINED and a.joining.retry_at is None


def test_the_core_writes_through_the_persistence_it_is_given(net: Net) -> None:
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    record = a.sign(dht_key("kept"), b"v", net.now)
    b.receive_datagram(
        encode(Message(MsgType.STORE, b"r" * 20, a.node_id, records=(record,))),
        net.addr(a),
        net.now,
    )
    kept = b.persistence.load_records(Table.HELD)
    assert kept == [(record, "10.0.0.1")]


def test_a_record_signed_with_an_identity_key_carries_its_owner_and_is_stored(net: Net) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    a, b = net.node("10.0.0.1"), net.node("10.0.0.2")
    owner = "http://host-a.com:8084/alice.xml"
    record = a.sign(dht_key("alice:status"), b"online", net.now, 600, owner, RsaSigner(key))
    assert (record.scheme, record.owner, record.created) == (RSA_PSS, owner, int(WALL + net.now))
    b.receive_datagram(
        encode(Message(MsgType.STORE, b"r" * 20, a.node_id, records=(record,))),
        net.addr(a),
        net.now,
    )
    assert b.store.get(record.key, WALL + net.now) == [record]


@pytest.mark.parametrize(("ahead", "refusal"), [(300, None), (301, Refusal.CREATED_IN_FUTURE)])
def test_clock_skew_limit_is_five_minutes_at_its_edge(
    net: Net, ahead: int, refusal: Refusal | None
) -> None:
    """A record dated up to 300 s ahead of the storing node's clock is taken, 301 s is not:
    a limit ten times larger (or smaller) fails this test."""
    a, b = net.node("10.0.0.1", DHTSettings()), net.node("10.0.0.2", DHTSettings())
    wall = int(WALL + net.now)
    record = sign_record(a.signer, dht_key("skewed"), b"v", wall + ahead, 3600)
    b.receive_datagram(
        encode(Message(MsgType.STORE, b"r" * 20, a.node_id, records=(record,))),
        net.addr(a),
        net.now,
    )
    [(reply, _)] = b.datagrams_to_send()
    answer = decode(reply)
    assert answer.ok is (refusal is None)
    assert answer.reason == ("" if refusal is None else refusal.value)
    assert b.store.get(record.key, wall) == ([record] if refusal is None else [])
