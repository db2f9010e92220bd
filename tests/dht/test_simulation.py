"""Whole-network behaviour of the real core, in the deterministic simulator (``sim.py``)."""

from __future__ import annotations

import random

import pytest

from bitdust.dht.events import LookupDone, StoreDone, ValueFound
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import Record, dht_key
from tests.dht.sim import Simulation, add_liar, ids

K = 8


def lookup(sim: Simulation, node: DHTNode, target: bytes) -> LookupDone:
    event = sim.call(node, lambda now: node.find_node(target, now))
    assert isinstance(event, LookupDone)
    return event


def assert_exact_closest(sim: Simulation, asker: DHTNode, event: LookupDone) -> None:
    expected = [i for i in sim.true_closest(event.target, K + 1) if i != asker.node_id][:K]
    assert ids(event.nodes) == expected


def store_values(
    sim: Simulation, nodes: list[DHTNode], count: int, rng: random.Random
) -> list[Record]:
    records = []
    for i in range(count):
        publisher = rng.choice(nodes)
        record = publisher.sign(dht_key(f"value-{i}"), f"payload {i}".encode(), sim.now)
        done = sim.call(publisher, lambda now, r=record, p=publisher: p.set_value(r, now))
        assert isinstance(done, StoreDone) and done.stored_count == K
        records.append(record)
    return records


def get(sim: Simulation, node: DHTNode, key: bytes) -> ValueFound:
    event = sim.call(node, lambda now: node.get_value(key, now))
    assert isinstance(event, ValueFound)
    return event


def test_100_nodes_random_lookups_find_the_exact_closest_set() -> None:
    sim = Simulation(seed=11)
    nodes = sim.build(100)
    rng = random.Random(1)
    for _ in range(50):
        asker = rng.choice(nodes)
        assert_exact_closest(sim, asker, lookup(sim, asker, rng.randbytes(20)))


def test_a_seed_that_dies_after_the_join_is_not_needed() -> None:
    sim = Simulation(seed=12)
    nodes = sim.build(60)
    sim.kill(sim.addr_of(nodes[0]))
    rng = random.Random(2)
    for _ in range(20):
        asker = rng.choice(nodes[1:])
        assert_exact_closest(sim, asker, lookup(sim, asker, rng.randbytes(20)))


@pytest.fixture(scope="module")
def net1000() -> tuple[Simulation, list[DHTNode]]:
    """One 1,000-node network (about 20 s to build) shared by the sim1000 tests, which run in
    file order: the lookups first, then the test that kills a fifth of the nodes."""
    sim = Simulation(seed=1000)
    return sim, sim.build(1000)


@pytest.mark.sim1000
def test_1000_nodes_join_through_one_seed_and_lookups_are_exact(
    net1000: tuple[Simulation, list[DHTNode]],
) -> None:
    sim, nodes = net1000
    assert all(len(n.table) >= K for n in nodes)
    rng = random.Random(3)
    for _ in range(100):
        asker = rng.choice(nodes)
        event = lookup(sim, asker, rng.randbytes(20))
        assert_exact_closest(sim, asker, event)
    for _ in range(50):  # looking up a known node's id finds that node first
        asker, wanted = rng.sample(nodes, 2)
        assert lookup(sim, asker, wanted.node_id).nodes[0].node_id == wanted.node_id


@pytest.mark.sim1000
def test_1000_nodes_values_survive_losing_a_fifth_of_the_network(
    net1000: tuple[Simulation, list[DHTNode]],
) -> None:
    sim, nodes = net1000
    rng = random.Random(4)
    records = store_values(sim, nodes, 50, rng)
    for victim in rng.sample(nodes, 200):
        sim.kill(sim.addr_of(victim))
    alive = list(sim.nodes.values())
    assert len(alive) == 800
    for record in records:
        found = get(sim, rng.choice(alive), record.key)
        assert found.records == (record,)


def test_lossy_network_still_finds_every_value() -> None:
    sim = Simulation(seed=5, loss=0.05)
    nodes = sim.build(200)
    rng = random.Random(5)
    records, stored = [], []
    for i in range(20):
        publisher = rng.choice(nodes)
        record = publisher.sign(dht_key(f"lossy-{i}"), b"x", sim.now)
        done = sim.call(publisher, lambda now, r=record, p=publisher: p.set_value(r, now))
        stored.append(done.stored_count)
        records.append(record)
    # A STORE and its answer each cross a 5 % lossy link: about 90 % are confirmed. One
    # publish of 20 may be unlucky (below K/2 about 1 % of the time); the total may not.
    assert sum(stored) >= 0.75 * K * len(records) and min(stored) >= 2
    for record in records:
        assert get(sim, rng.choice(nodes), record.key).records == (record,)
    timeouts = sum(n.counters["timeouts"] for n in nodes)
    assert timeouts > 0  # the loss was real


def test_liars_and_floods_do_not_change_outcomes() -> None:
    sim = Simulation(seed=6)
    nodes = sim.build(300)
    seed = sim.addr_of(nodes[0])
    liars = [add_liar(sim, seed, flood=100, flood_interval=5.0) for _ in range(5)]
    rng = random.Random(6)
    records = store_values(sim, nodes, 20, rng)
    for _ in range(25):
        asker = rng.choice(nodes)
        event = lookup(sim, asker, rng.randbytes(20))
        honest = [
            c.node_id for c in event.nodes if c.node_id not in {x.inner.node_id for x in liars}
        ]
        expected = [i for i in sim.true_closest(event.target, K + 1) if i != asker.node_id]
        assert honest == expected[: len(honest)] and len(event.nodes) == K
    for record in records:
        assert get(sim, rng.choice(nodes), record.key).records == (record,)
    for liar in liars:  # a key right at a liar: it is surely asked, and all it offers is forged
        asker = rng.choice(nodes)
        before = dict(asker.counters)
        assert get(sim, asker, liar.inner.node_id).records == ()
        assert asker.counters["invalid_signature"] > before["invalid_signature"]
        assert asker.counters["bad_record"] > before["bad_record"]
    total = {name: sum(n.counters[name] for n in nodes) for name in nodes[0].counters}
    assert total["malformed"] > 0  # garbage was seen and dropped
    assert total["store_refused"] + total["invalid_signature"] > 0
    assert total["internal_errors"] == 0
    assert all(len(n.table) <= 200 for n in nodes)  # invented ids did not flood the tables
    stored = sum(len(n.store) for n in nodes)
    assert stored <= 20 * (K + 1)  # only the genuine records are held
