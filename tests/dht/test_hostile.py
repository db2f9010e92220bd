"""Crafted input against one DHT core (issue 10, DHT part): each attack is refused with a reason
and the node stays available to its legitimate users. Sans-IO: datagrams and a fake clock."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.dht.persistence import MemoryPersistence
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import Record, dht_key, owned_key, sign_record
from bitdust.dht.refusals import Refusal
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer, RsaSigner
from bitdust.dht.settings import DHTSettings
from bitdust.dht.wire import Message, MsgType, decode, encode

WALL = 1_750_000_000.0
NOW = 100.0


def make_node(settings: DHTSettings | None = None, seed: int = 1) -> DHTNode:
    return DHTNode(
        random.Random(seed).randbytes(20),
        settings or DHTSettings(),
        MemoryPersistence(),
        Ed25519Signer.generate(),
        verifiers=STANDARD_VERIFIERS,
        now=NOW,
        wall_offset=WALL,
        rng=random.Random(seed),
    )


def store(node: DHTNode, record: Record, host: str, now: float = NOW) -> Message:
    """Send one STORE from ``host`` and return the node's answer."""
    rid = random.randbytes(20)
    node.receive_datagram(
        encode(Message(MsgType.STORE, rid, b"s" * 20, records=(record,))), (host, 14441), now
    )
    replies = [decode(data) for data, addr in node.datagrams_to_send() if addr[0] == host]
    [answer] = [m for m in replies if m.rid == rid]
    return answer


@pytest.fixture(scope="module")
def rsa4096() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


def test_costly_stores_from_one_network_are_bounded_and_others_are_still_served(
    rsa4096: rsa.RSAPrivateKey,
) -> None:
    """2,000 STOREs with 4096-bit signatures that do not verify, from 250 addresses of one /24
    (each under the per-address request limit): the node checks only what the network's CPU
    budget buys, refuses the rest unchecked, and still stores and answers a legitimate client."""
    node = make_node()
    good = sign_record(RsaSigner(rsa4096), dht_key("attack"), b"x" * 3000, int(WALL + NOW), 600)
    forged = dataclasses.replace(good, value=b"y" * 3000)
    started = time.process_time()
    answers = [store(node, forged, f"10.6.6.{i % 250 + 1}") for i in range(2000)]
    spent = time.process_time() - started
    reasons = {a.reason for a in answers}
    assert reasons == {Refusal.INVALID_SIGNATURE.value, Refusal.BUSY.value}
    budget = node.settings.verify_burst_per_network
    assert node.counters["verified"] <= budget / 90e-6 + 1  # ~556 of 2,000
    assert node.counters["verify_busy"] >= 1400
    assert spent < 1.0, f"{spent:.2f} s of CPU for 2,000 forged STOREs"

    legit = Ed25519Signer.generate()
    record = sign_record(legit, dht_key("bob"), b"hello", int(WALL + NOW), 600)
    assert store(node, record, "10.7.7.7").ok
    node.receive_datagram(
        encode(Message(MsgType.FIND_VALUE, b"q" * 20, b"c" * 20, target=record.key)),
        ("10.8.8.8", 14441),
        NOW,
    )
    [(reply, _)] = node.datagrams_to_send()
    assert decode(reply).records == (record,)


def test_the_network_budget_refills_with_time(rsa4096: rsa.RSAPrivateKey) -> None:
    settings = DHTSettings(verify_burst_per_network=0.001, verify_seconds_per_network=0.001)
    node = make_node(settings)
    good = sign_record(RsaSigner(rsa4096), dht_key("k"), b"v", int(WALL + NOW), 600)
    forged = dataclasses.replace(good, value=b"w")
    first = [store(node, forged, "10.6.6.1").reason for _ in range(20)]
    assert first.count(Refusal.INVALID_SIGNATURE.value) == 11  # 1 ms buys 11 checks of 90 us
    assert first[11:] == [Refusal.BUSY.value] * 9
    assert store(node, good, "10.6.6.1", NOW + 1.0).ok  # a second later: 1 ms more
    assert store(node, good, "10.6.6.2", NOW + 1.0).ok  # the same record again: no check
    assert node.counters["verified"] == 12


def test_an_owned_key_cannot_be_squatted_by_other_signers(rsa4096: rsa.RSAPrivateKey) -> None:
    """Issue 10.3: 16 throwaway signers go first under bob's supplier-list key; bob's own
    record is still stored, theirs are refused (claiming the name) or stay beside it unnamed."""
    node = make_node()
    bob = RsaSigner(rsa4096)
    wall = int(WALL + NOW)
    key = owned_key(bob.public_key, b"suppliers")
    squatters = [Ed25519Signer.generate() for _ in range(16)]
    for i, signer in enumerate(squatters):
        claim = sign_record(signer, key, b"evil", wall, 600)
        claim = dataclasses.replace(claim, name=b"suppliers")  # bob's name, their key
        answer = store(node, claim, f"10.6.{i}.1")
        assert (answer.ok, answer.reason) == (False, Refusal.NOT_OWNER.value)
        unnamed = sign_record(signer, key, b"evil", wall, 600)  # the shared form of the key
        store(node, unnamed, f"10.6.{i}.1")
    assert len(node.store.get(key, wall)) == node.settings.max_records_per_key
    mine = sign_record(bob, key, b"alice,carol", wall, 600, name=b"suppliers")
    answer = store(node, mine, "10.7.7.7")
    assert answer.ok, answer.reason
    assert mine in node.store.get(key, wall)


def test_a_shared_key_keeps_room_for_other_networks() -> None:
    """Issue 10.3: signers from one /24 get a fair share of a shared key, not all of it."""
    node = make_node()
    wall = int(WALL + NOW)
    key = dht_key("advert:proxy-router")
    answers = [
        store(node, sign_record(Ed25519Signer.generate(), key, b"x", wall, 600), f"10.6.6.{i}")
        for i in range(1, 17)
    ]
    assert [a.ok for a in answers] == [True, True] + [False] * 14
    assert {a.reason for a in answers[2:]} == {Refusal.KEY_NETWORK_FULL.value}
    legit = sign_record(Ed25519Signer.generate(), key, b"router", wall, 600)
    assert store(node, legit, "10.7.7.7").ok


def request(node: DHTNode, msg: Message, host: str) -> tuple[int, Message]:
    """Send ``msg`` from ``host``; the size and contents of the node's reply to it."""
    node.receive_datagram(encode(msg), (host, 14441), NOW)
    [data] = [d for d, _ in node.datagrams_to_send() if decode(d).rid == msg.rid]
    return len(data), decode(data)


def token_for(node: DHTNode, host: str) -> bytes:
    """What a client at ``host`` learns from any reply: its address token."""
    _, pong = request(node, Message(MsgType.PING, random.randbytes(20), b"c" * 20), host)
    assert pong.token is not None
    return pong.token


def find_value(node: DHTNode, key: bytes, host: str = "10.8.8.8") -> tuple[Record, ...]:
    """A FIND_VALUE from a client that has proven its address (it echoes its token)."""
    ask = Message(
        MsgType.FIND_VALUE, random.randbytes(20), b"c" * 20, target=key, token=token_for(node, host)
    )
    return request(node, ask, host)[1].records


def test_big_future_dated_records_do_not_push_the_others_out_of_replies() -> None:
    """Issue 10.4: two 4,000-byte records dated just ahead no longer crowd out a small one."""
    node = make_node()
    wall = int(WALL + NOW)
    key = dht_key("suppliers:bob@host-b.com")
    legit = sign_record(Ed25519Signer.generate(), key, b"alice,carol", wall, 600)
    assert store(node, legit, "10.7.7.7").ok
    for i in range(2):
        big = sign_record(Ed25519Signer.generate(), key, b"z" * 4000, wall + 290, 600)
        assert store(node, big, f"10.6.{i}.1").ok
    replies = [find_value(node, key) for _ in range(4)]
    assert all(legit in records for records in replies)
    big_ones = [r for records in replies for r in records if r is not legit and r != legit]
    assert len({r.public_key for r in big_ones}) == 2  # the rotation shows both in turn


def test_the_owners_record_comes_first_under_an_owned_key(rsa4096: rsa.RSAPrivateKey) -> None:
    node = make_node()
    wall = int(WALL + NOW)
    bob = RsaSigner(rsa4096)
    key = owned_key(bob.public_key, b"suppliers")
    for i in range(3):
        junk = sign_record(Ed25519Signer.generate(), key, b"z" * 4000, wall + 290, 600)
        store(node, junk, f"10.6.{i}.1")
    mine = sign_record(bob, key, b"alice,carol", wall, 600, name=b"suppliers")
    assert store(node, mine, "10.7.7.7").ok
    assert all(find_value(node, key)[0] == mine for _ in range(4))


def test_a_store_filled_from_twelve_networks_still_takes_a_legitimate_record() -> None:
    """Issue 10.5, scaled down (a 120-record store, 10 per /24): twelve attacking networks
    fill it; a newcomer's record evicts one of the heaviest network's, the one furthest from
    the node's id, instead of being refused until records expire."""
    settings = DHTSettings(max_records=120, max_records_per_network=12, max_records_per_signer=1000)
    node = make_node(settings)
    wall = int(WALL + NOW)
    attacker = Ed25519Signer.generate()
    for net in range(12):
        for i in range(14):
            junk = sign_record(attacker, dht_key(f"junk-{net}-{i}"), b"j", wall, 600)
            store(node, junk, f"10.6.{net}.{i + 1}")
    networks: dict[str, list[Record]] = {}
    for held in node.store.held():
        networks.setdefault(held.origin_ip.rsplit(".", 1)[0], []).append(held.record)
    top = max(len(r) for r in networks.values())
    assert len(node.store) == 120 and top <= 12
    before = {r for records in networks.values() for r in records}
    legit = sign_record(Ed25519Signer.generate(), dht_key("bob"), b"hello", wall, 600)
    answer = store(node, legit, "10.7.7.7")
    assert answer.ok, answer.reason
    after = {h.record for h in node.store.held()}
    assert legit in after and len(after) == 120
    [evicted] = before - after
    [victims] = [records for records in networks.values() if evicted in records]
    assert len(victims) == top  # taken from a network holding the most
    distance = lambda r: int.from_bytes(r.key, "big") ^ node_int(node)  # noqa: E731
    assert evicted == max(victims, key=distance)  # its record furthest from the node's id
    # A network that holds its share already cannot take room from the others.
    again = sign_record(attacker, dht_key("junk-again"), b"j", wall, 600)
    assert store(node, again, "10.6.0.99").reason == Refusal.STORE_FULL.value


def node_int(node: DHTNode) -> int:
    return int.from_bytes(node.node_id, "big")


def test_an_unproven_address_gets_at_most_three_times_what_it_sent() -> None:
    """Issue 10.6: a 79-byte FIND_VALUE drew 4,216 bytes (x53). Now an address that has not
    echoed its token gets at most 3x, cut and marked; with the token, the whole reply."""
    node = make_node()
    wall = int(WALL + NOW)
    key = dht_key("big")
    for i in range(2):
        big = sign_record(Ed25519Signer.generate(), key, b"z" * 4000, wall, 600)
        assert store(node, big, f"10.6.{i}.1").ok
    victim = "10.9.9.9"  # the forged source address
    ask = Message(MsgType.FIND_VALUE, random.randbytes(20), b"c" * 20, target=key)
    unproven, reply = request(node, ask, victim)
    sent = len(encode(ask))
    assert sent <= 80 and unproven <= 3 * sent
    assert reply.truncated and reply.records == () and reply.token is not None
    for _ in range(3):  # FIND_NODE too, whatever the routing table holds
        node.receive_datagram(
            encode(Message(MsgType.PING, random.randbytes(20), random.randbytes(20))),
            (f"10.5.{_}.1", 14441),
            NOW,
        )
    find = Message(MsgType.FIND_NODE, random.randbytes(20), b"c" * 20, target=key)
    size, _ = request(node, find, victim)
    assert size <= 3 * len(encode(find))
    proven = dataclasses.replace(ask, rid=random.randbytes(20), token=reply.token)
    size, full = request(node, proven, victim)
    assert len(full.records) == 1 and not full.truncated and size > 4000
    forged = dataclasses.replace(ask, rid=random.randbytes(20), token=token_for(node, "10.1.1.1"))
    size, _ = request(node, forged, victim)  # another address's token proves nothing
    assert size <= 3 * len(encode(forged))
    print(
        f"\n10.6: a {sent}-byte FIND_VALUE drew {unproven} bytes unproven, "
        f"{len(encode(full))} proven"
    )
