"""A node at its maximum of operations refuses new calls with DHTBusy (the API answers 503),
and serves again once they end; joining is not one of the operations it refuses."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bitdust.dht.protocol import DHTBusy
from bitdust.dht.settings import DHTSettings
from bitdust.dht.transport import start_dht
from tests.ports import free_port


@pytest.mark.timeout(30)
async def test_a_busy_node_refuses_lookups_then_serves_and_joins() -> None:
    settings = DHTSettings(rpc_timeout=0.5, max_operations=4, join_retry_initial=0.1)
    seed_port = free_port(socket.SOCK_DGRAM)
    node = await start_dht("127.0.0.1", 0, None, settings, known_nodes=[("127.0.0.1", seed_port)])
    seed = None
    try:
        # Take every operation slot before the join task runs its first attempt.
        for _ in range(settings.max_operations):
            node.node.ping(("127.0.0.1", seed_port), time.monotonic())
        node._pump()
        with pytest.raises(DHTBusy):
            await node.find_node(bytes(20))
        await asyncio.sleep(0.3)
        assert not node.joined
        seed = await start_dht("127.0.0.1", seed_port, None, settings)
        async with asyncio.timeout(20):
            while not node.joined:
                await asyncio.sleep(0.05)
        assert len(node.node.table) == 1
        async with asyncio.timeout(10):
            while True:  # the slots free up as the pings time out
                try:
                    found = await node.find_node(bytes(20))
                    break
                except DHTBusy:
                    await asyncio.sleep(0.1)
        assert [contact.port for contact in found] == [seed_port]
    finally:
        await node.close()
        if seed is not None:
            await seed.close()
