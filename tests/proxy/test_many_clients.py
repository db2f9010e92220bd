"""One router with 100 routed nodes in this process: every one is reached through it, the
router answers promptly meanwhile, and the routes limit holds."""

from __future__ import annotations

import asyncio

import pytest

from bitdust.p2p.errors import RequestRefused
from bitdust.p2p.transport import EndpointLimits
from bitdust.proxy.protocol import REGISTER
from bitdust.proxy.relay import RelayLimits
from tests.proxy.network import Network

ROUTER = "http://host-c.com/router.xml"
BOB = "http://host-b.com/bob.xml"
CLIENTS = 100
# every node here comes from 127.0.0.1: the per-address caps are for hosts, not this test
ONE_HOST = EndpointLimits(sessions_per_address=1000)


@pytest.fixture
async def net():
    network = Network()
    yield network
    await network.close()


async def answer(peer: str, data: bytes) -> bytes:
    return data


@pytest.mark.timeout(90)
async def test_one_router_serves_a_hundred_routed_nodes_within_its_limits(net: Network):
    limits = RelayLimits(routes=CLIENTS, connections_per_address=1000, lease=60)
    _, router = await net.router(ROUTER, limits, sessions=ONE_HOST)
    names = [f"http://host-a.com/node{n}.xml" for n in range(CLIENTS)]
    routed = await asyncio.gather(*(net.routed(name, [ROUTER]) for name in names))
    for endpoint, _ in routed:
        endpoint.on_request("echo", answer)
    bob = await net.direct(BOB)
    loop = asyncio.get_running_loop()

    started = loop.time()
    replies = await asyncio.gather(*(bob.request(name, "echo", name.encode()) for name in names))
    elapsed = loop.time() - started
    assert replies == [name.encode() for name in names]

    probe = loop.time()
    assert await routed[0][0].request(ROUTER, REGISTER, b"", timeout=5)  # renewing still works
    assert loop.time() - probe < 1.0
    stats = router.relay.stats()
    assert len(stats) == CLIENTS and all(route["connections"] == 1 for route in stats)
    assert router.connections == 2 * CLIENTS  # one pair per routed node, nothing left over
    late = net.endpoint("http://host-a.com/late.xml")
    net.publish("http://host-a.com/late.xml", [])
    with pytest.raises(RequestRefused, match=f"routes {CLIENTS} nodes already"):
        await late.request(ROUTER, REGISTER, b"", timeout=5)
    print(f"100 relayed sessions opened and answered in {elapsed:.2f} s")
