"""About 100 real asyncio UDP nodes on 127.0.0.1 in one process, each with its own SQLite file."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import stat
from pathlib import Path

import pytest

from bitdust.dht.records import dht_key
from bitdust.dht.settings import DHTSettings
from bitdust.dht.transport import DHTEndpoint, start_dht

SETTINGS = DHTSettings(rpc_timeout=2.0, join_retry_initial=0.2, join_retry_max=1.0)
COUNT = 100


@pytest.fixture(autouse=True)
def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def network(tmp_path: Path, count: int) -> list[DHTEndpoint]:
    seed = await start_dht("127.0.0.1", 0, tmp_path / "seed.db", SETTINGS)
    nodes = [seed]
    for batch in range(1, count, 25):
        nodes += await asyncio.gather(
            *(
                start_dht(
                    "127.0.0.1", 0, tmp_path / f"n{i}.db", SETTINGS, known_nodes=[seed.address]
                )
                for i in range(batch, min(count, batch + 25))
            )
        )
        await wait_for(lambda group=nodes: all(n.joined for n in group))
    return nodes


@pytest.mark.timeout(90)
async def test_100_udp_nodes_join_look_up_store_and_get(tmp_path: Path) -> None:
    nodes = await network(tmp_path, COUNT)
    try:
        assert nodes[0].status.startswith("genesis")
        assert all(n.status.startswith("joined") for n in nodes[1:])
        ids = sorted(n.node.node_id for n in nodes)
        rng = random.Random(9)

        async def check_lookup() -> None:
            asker = rng.choice(nodes)
            target = rng.randbytes(20)
            found = await asker.find_node(target)
            others = [i for i in ids if i != asker.node.node_id]
            t = int.from_bytes(target, "big")
            expected = sorted(others, key=lambda i: int.from_bytes(i, "big") ^ t)
            assert [c.node_id for c in found] == expected[: SETTINGS.k]

        await asyncio.gather(*(check_lookup() for _ in range(50)))

        key = dht_key("supplier-list:alice@host-a.com")
        stored = await nodes[3].set_value(key, b"suppliers: bob, carol")
        assert stored == SETTINGS.k
        for reader in rng.sample(nodes, 10):
            records = await reader.get_value(key)
            assert [r.value for r in records] == [b"suppliers: bob, carol"]
        stats = nodes[50].stats()
        assert stats["contacts"] >= SETTINGS.k and stats["joined"] is True
        assert stats["counters"]["malformed"] == 0  # type: ignore[index]
    finally:
        await asyncio.gather(*(n.close() for n in nodes))
    mode = stat.S_IMODE(os.stat(tmp_path / "n1.db").st_mode)
    assert mode == 0o600  # the database holds the node's private key


async def test_join_retries_until_a_known_node_appears(tmp_path: Path) -> None:
    probe = await start_dht("127.0.0.1", 0, None, SETTINGS)
    port = probe.address[1]
    await probe.close()  # a free port where nobody listens yet
    late = await start_dht(
        "127.0.0.1", 0, tmp_path / "late.db", SETTINGS, known_nodes=[("127.0.0.1", port)]
    )
    try:
        await wait_for(lambda: "no known node answered" in late.status, timeout=10)
        assert not late.joined
        seed = await start_dht("127.0.0.1", port, tmp_path / "seed.db", SETTINGS)
        try:
            await wait_for(lambda: late.joined, timeout=15)
            assert late.stats()["contacts"] == 1
        finally:
            await seed.close()
    finally:
        await late.close()


async def test_a_node_restarts_with_its_id_routing_table_and_records(tmp_path: Path) -> None:
    seed = await start_dht("127.0.0.1", 0, tmp_path / "seed.db", SETTINGS)
    node = await start_dht(
        "127.0.0.1", 0, tmp_path / "node.db", SETTINGS, known_nodes=[seed.address]
    )
    try:
        await wait_for(lambda: node.joined)
        key = dht_key("kept across restarts")
        assert await seed.set_value(key, b"still here") == 1  # node holds it
        node_id, contacts = node.node.node_id, {c.node_id for c in node.node.table}
        published = await node.set_value(dht_key("mine"), b"republished after restart")
        assert published == 1
        await node.close()

        again = await start_dht("127.0.0.1", 0, tmp_path / "node.db", SETTINGS)
        try:
            assert again.node.node_id == node_id
            assert {c.node_id for c in again.node.table} == contacts
            held = again.node.store.held()
            assert [h.record.value for h in held] == [b"still here"]
            assert [r.value for r in again.node.store.published()] == [b"republished after restart"]
            assert again.stats()["items"] == 1
        finally:
            await again.close()
    finally:
        await node.close()
        await seed.close()
