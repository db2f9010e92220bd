"""DHT figures: lookup hops and messages (simulator), lookup latency (loopback UDP), memory,
and the amplification of a reply to an unproven address.

The simulated networks of 100 and 1,000 nodes are built by the protocol's own joins, one after
another; 10,000 joins would take minutes, so that network's routing tables are filled as a
settled network's are (up to k nodes of each bucket's range, through ``RoutingTable.add``). The
same shortcut at 1,000 nodes, beside the joined 1,000, shows how far it is from the real thing.
Its datagrams per lookup are not reported: nobody in such a network has heard from the asker
yet, so every query meets a full bucket and sets off eviction pings no joined network sends.

Each limit is derived in the same run:
- hops per lookup (mean, and the 99th percentile) below log2(N), the bound of a binary search
  over N nodes;
- lookup latency in the simulator (its time from start to result, in mean round trips of the
  simulated network) below log2(N): alpha parallel queries per round must keep the rounds, not
  the queries, on the critical path;
- datagrams per lookup below 2 * (k + alpha * log2(N)): a lookup must query the k closest nodes
  and adds at most alpha fresh queries per round over at most log2(N) rounds, each a request and
  a reply;
- wall time per lookup on ~100 loopback UDP nodes below the same lookups done as a serial
  walk (alpha = 1: each query waits for the reply before it), both measured here: the parallel
  iterative lookup must beat it. The nodes asked live in three worker processes, as on separate
  hosts, so the alpha queries of a round are answered at once (in one process and one loop they
  could not overlap). A ping's round trip times the lookup's RPCs, the limit until November
  2026, undercounted the serial walk: a FIND_NODE reply carries k contacts and costs more;
- memory per simulated node (what ``bitdust/dht`` code allocated and still holds after
  building the network, by tracemalloc, divided by N) below 4x the
  same contacts and records held as plain dicts and bytes (traced the same way): what a node
  must remember, with room for its tables, queues and counters.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import gc
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import uvloop

import bitdust.dht as dht_package
from bitdust.dht.events import LookupDone
from bitdust.dht.persistence import MemoryPersistence
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import dht_key, sign_record
from bitdust.dht.routing import ID_BITS, id_int
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.tokens import AMPLIFICATION
from bitdust.dht.transport import DHTEndpoint, start_dht
from bitdust.dht.wire import Contact, Message, MsgType, encode
from tests.dht.sim import SIM_SETTINGS, Simulation


def progress(line: str) -> None:
    print(f"# bench_dht: {line}", file=sys.stderr, flush=True)


def joined_network(sim: Simulation, count: int) -> list[DHTNode]:
    """``count`` nodes joined one after another through the first (the protocol's own join:
    a self-lookup and bucket refreshes each), settled."""
    nodes = sim.build(count)
    sim.settle(30.0)  # the last joins' bucket refreshes must not be billed to the lookups
    return nodes


def converged_network(sim: Simulation, count: int) -> list[DHTNode]:
    """``count`` nodes whose routing tables hold what a settled network's do, without running
    the joins (10,000 of them one after another cost minutes): for each of a node's buckets,
    from the farthest half of the id space inwards, up to k of the nodes in its range, added
    as heard from (``RoutingTable.add``, so its own splitting rules apply)."""
    nodes = [sim.new_node() for _ in range(count)]
    by_id = sorted(
        (id_int(node.node_id), Contact(node.node_id, *addr)) for addr, node in sim.nodes.items()
    )
    ids = [value for value, _ in by_id]
    k = sim.settings.k
    for node in nodes:
        own = id_int(node.node_id)
        for shared in range(ID_BITS):
            width = ID_BITS - shared - 1  # ids sharing ``shared`` leading bits, then differing
            lo = ((own >> width) ^ 1) << width
            first, last = bisect.bisect_left(ids, lo), bisect.bisect_left(ids, lo + (1 << width))
            for index in sim.rng.sample(range(first, last), min(k, last - first)):
                node.table.add(by_id[index][1], sim.now)
            near = own >> width << width  # this node's side: is anybody else left in it?
            if bisect.bisect_left(ids, near + (1 << width)) - bisect.bisect_left(ids, near) <= 1:
                break
    return nodes


def _sim_lookups(
    count: int, lookups: int, seed: int, build: Callable[[Simulation, int], list[DHTNode]]
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    sim = Simulation(seed=seed)
    nodes = build(sim, count)
    progress(f"{count} nodes ({build.__name__}) built in {time.perf_counter() - started:.1f} s")
    rng = random.Random(seed)
    hops, messages, round_trips = [], [], []
    mean_rtt = 2 * statistics.mean(sim.latency)  # the simulator's one-way delay is uniform
    for _ in range(lookups):
        node = rng.choice(nodes)
        target = rng.randbytes(20)
        before, started = sim.sent, sim.now
        event = sim.call(node, lambda now, n=node, t=target: n.find_node(t, now))
        assert isinstance(event, LookupDone) and event.nodes
        hops.append(event.hops)
        messages.append(sim.sent - before)
        round_trips.append((sim.now - started) / mean_rtt)
    k, alpha = SIM_SETTINGS.k, SIM_SETTINGS.alpha
    log_n = math.log2(count)
    joined = build is joined_network
    how = "joined one by one" if joined else "tables filled as a settled network's, no joins run"
    name = f"{count} simulated nodes" + ("" if joined else ", settled tables")
    rows = [
        {
            "name": f"dht lookup hops ({name})",
            "figure": statistics.mean(hops),
            "unit": "hops",
            "limit": log_n,
            "target": "below",
            "note": f"mean of {lookups} lookups; {how}",
        },
        {
            "name": f"dht lookup hops p99 ({name})",
            "figure": _percentile(hops, 99),
            "unit": "hops",
            "limit": log_n,
            "target": "below",
            "note": f"99th percentile of {lookups} lookups; {how}",
        },
        {
            "name": f"dht lookup latency ({name})",
            "figure": statistics.mean(round_trips),
            "unit": "round trips",
            "limit": log_n,
            "target": "below",
        },
    ]
    if joined:  # settled tables were never heard from by the askers: eviction pings inflate it
        rows.append(
            {
                "name": f"dht datagrams per lookup ({name})",
                "figure": statistics.mean(messages),
                "unit": "datagrams",
                "limit": 2 * (k + alpha * log_n),
                "target": "below",
            }
        )
    return rows


def _percentile(values: list[float], percent: float) -> float:
    """The nearest-rank percentile: a value some lookup really took."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def _memory(count: int, seed: int) -> dict[str, Any]:
    tracemalloc.start()
    sim = Simulation(seed=seed)
    nodes = sim.build(count)
    # A full collection also empties the interpreter's free lists: tuples and floats freed
    # there stay traced to whoever allocated them last, a fixed cost that is no node's state.
    gc.collect()
    # Count what the DHT package allocated and still holds, not the simulator's own queues.
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, str(Path(dht_package.__file__).parent / "*"))]
    )
    used = sum(stat.size for stat in snapshot.statistics("filename"))
    tracemalloc.stop()
    # Baseline: the same contacts and records as plain Python objects, nothing else. Ids and
    # hosts are copied (bytes()/str() of bytes/str return the same object), so that the baseline
    # owns its data as the nodes do.
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plain = [
        (
            {bytes(bytearray(c.node_id)): (c.host.encode().decode(), c.port) for c in node.table},
            [msgpack.packb(h.record.to_map()) for h in node.store.held()],
        )
        for node in nodes
    ]
    baseline = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del plain
    return {
        "name": f"dht memory per node ({count} simulated nodes)",
        "figure": used / count / 1024,
        "unit": "KiB",
        "limit": 4 * baseline / count / 1024,
        "target": "below",
    }


#: Nodes of the loopback network that live in the measuring process (the genesis node and the
#: askers); the others are spread over ``WORKERS`` child processes, as separate hosts would be.
ASKERS = 10
WORKERS = 3
JOIN_BATCH = 25
LOOPBACK_SETTINGS = DHTSettings(rpc_timeout=2.0)
#: The serial walk the parallel lookup is compared with: the same protocol, one query at a time.
SERIAL_SETTINGS = dataclasses.replace(LOOPBACK_SETTINGS, alpha=1)


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _joined_nodes(
    count: int, seed: tuple[str, int], directory: Path, settings: DHTSettings = LOOPBACK_SETTINGS
) -> list[DHTEndpoint]:
    """``count`` nodes on 127.0.0.1 joined through ``seed``, 25 at a time, their databases in
    ``directory``."""
    directory.mkdir(exist_ok=True)
    nodes: list[DHTEndpoint] = []
    for first in range(0, count, JOIN_BATCH):
        batch = range(first, min(count, first + JOIN_BATCH))
        nodes += await asyncio.gather(
            *(
                start_dht("127.0.0.1", 0, directory / f"{i}.db", settings, known_nodes=[seed])
                for i in batch
            )
        )
        async with asyncio.timeout(60):
            while not all(n.joined for n in nodes):
                await asyncio.sleep(0.02)
    return nodes


async def _serve(count: int, seed_port: int) -> None:
    """A worker process: ``count`` joined nodes, their ports on stdout, served until stdin ends."""
    _raise_file_limit()
    with tempfile.TemporaryDirectory() as tmp:
        nodes = await _joined_nodes(count, ("127.0.0.1", seed_port), Path(tmp))
        try:
            print(json.dumps([n.address[1] for n in nodes]), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            await asyncio.gather(*(n.close() for n in nodes))


async def _loopback(count: int, lookups: int, seed: int) -> list[dict[str, Any]]:
    _raise_file_limit()
    rng = random.Random(seed)
    workers: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        seed_node = await start_dht("127.0.0.1", 0, Path(tmp) / "seed.db", LOOPBACK_SETTINGS)
        askers: list[DHTEndpoint] = []
        walkers: list[DHTEndpoint] = []
        try:
            per_worker = (count - 1 - 2 * ASKERS) // WORKERS
            for _ in range(WORKERS):
                command = [sys.executable, "-m", "tests.bench.bench_dht", "serve"]
                workers.append(
                    subprocess.Popen(
                        [*command, str(per_worker), str(seed_node.address[1])],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for worker in workers:
                await asyncio.to_thread(worker.stdout.readline)  # its nodes joined
            askers = await _joined_nodes(ASKERS, seed_node.address, Path(tmp) / "askers")
            walkers = await _joined_nodes(
                ASKERS, seed_node.address, Path(tmp) / "walkers", SERIAL_SETTINGS
            )
            await asyncio.sleep(0.5)  # let the joins' bucket refreshes settle
            walls: dict[str, list[float]] = {"parallel": [], "serial": []}
            for _ in range(lookups):
                target = rng.randbytes(20)
                for kind, group in (("parallel", askers), ("serial", walkers)):
                    node = rng.choice(group)
                    started = time.perf_counter()
                    event = await node._run(lambda now, n=node, t=target: n.node.find_node(t, now))
                    walls[kind].append(time.perf_counter() - started)
                    assert isinstance(event, LookupDone)
        finally:
            for worker in workers:
                worker.stdin.close()
            await asyncio.gather(*(n.close() for n in [seed_node, *askers, *walkers]))
            for worker in workers:
                await asyncio.to_thread(worker.wait, 30)
    return [
        {
            "name": f"dht lookup wall time ({count} loopback UDP nodes)",
            # medians on both sides: one GC pause or a busy neighbour must not decide it
            "figure": statistics.median(walls["parallel"]) * 1000,
            "unit": "ms",
            "limit": statistics.median(walls["serial"]) * 1000,
            "target": "below",
            "note": f"{lookups} lookups of random targets from {ASKERS} nodes in this process; "
            f"the other nodes in {WORKERS} worker processes of {per_worker} each; limit = the "
            f"same targets looked up with alpha = 1 (a serial walk) from {ASKERS} other nodes "
            "here; uvloop, as the node; the 4 processes share 2 cores",
        }
    ]


def _amplification() -> dict[str, Any]:
    """Reply bytes per request byte for a FIND_VALUE from an address that has not echoed its
    token, on a key holding two 4,000-byte records (issue 10.6 saw x53); the limit is the
    rule's 3x."""
    node = DHTNode(
        os.urandom(20), DHTSettings(), MemoryPersistence(), Ed25519Signer.generate(),
        verifiers=STANDARD_VERIFIERS, now=0.0, wall_offset=time.time(),
    )  # fmt: skip
    key = dht_key("bench:big")
    for i in range(2):
        record = sign_record(Ed25519Signer.generate(), key, b"z" * 4000, int(time.time()), 600)
        store = Message(MsgType.STORE, os.urandom(20), os.urandom(20), records=(record,))
        node.receive_datagram(encode(store), (f"10.6.{i}.1", 14441), 0.0)
    node.datagrams_to_send()
    ask = encode(Message(MsgType.FIND_VALUE, os.urandom(20), os.urandom(20), target=key))
    node.receive_datagram(ask, ("10.9.9.9", 14441), 0.0)
    [(reply, _)] = node.datagrams_to_send()
    return {
        "name": "dht reply bytes per request byte to an unproven address",
        "figure": len(reply) / len(ask),
        "unit": "x",
        "limit": float(AMPLIFICATION),
        "target": "below",
    }


def run(smoke: bool) -> list[dict[str, Any]]:
    if smoke:
        rows = _sim_lookups(50, 20, seed=1, build=joined_network)
        rows += _sim_lookups(200, 20, seed=5, build=converged_network)
        rows.append(_memory(50, seed=2))
        rows += uvloop.run(_loopback(20, 10, seed=3))
        rows.append(_amplification())
        return rows
    rows = _sim_lookups(100, 200, seed=1, build=joined_network)
    rows += _sim_lookups(1000, 200, seed=2, build=joined_network)
    rows += _sim_lookups(1000, 200, seed=2, build=converged_network)  # checks the shortcut
    rows += _sim_lookups(10_000, 200, seed=6, build=converged_network)
    rows.append(_memory(200, seed=3))
    rows += uvloop.run(_loopback(100, 100, seed=4))
    rows.append(_amplification())
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        uvloop.run(_serve(int(sys.argv[2]), int(sys.argv[3])))
    else:
        print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
