"""The router's shell on real sockets, with raw peers that break the rules: one that stops
reading is cut after the stall timeout with bounded memory, while another pair carries on."""

from __future__ import annotations

import asyncio

import pytest

from bitdust.p2p.preamble import MAGIC, Kind, Preamble
from bitdust.proxy.relay import RelayLimits, route_id
from tests.proxy.network import HOST, Network, until

ALICE = "http://host-a.com/alice.xml"
CAROL = "http://host-a.com/carol.xml"
ROUTER = "http://host-c.com/router.xml"


@pytest.fixture
async def net():
    network = Network()
    yield network
    await network.close()


async def test_a_routed_node_that_stops_reading_loses_its_pair_and_the_other_pair_carries_on(
    net: Network,
):
    endpoint, router = await net.router(ROUTER, RelayLimits(stall_timeout=1.0))
    port = endpoint.address[1]
    tokens: dict[str, str] = {}
    router._notify = lambda idurl, token: tokens.update({idurl: token}) is None  # type: ignore[method-assign]
    largest = 0
    report = router.relay.buffered

    def record(conn: int, size: int, now: float) -> None:
        nonlocal largest
        largest = max(largest, size)
        report(conn, size, now)

    router.relay.buffered = record  # type: ignore[method-assign]

    Ends = tuple[asyncio.StreamReader, asyncio.StreamWriter]

    async def pair(idurl: str) -> tuple[*Ends, *Ends]:
        router.relay.register(idurl, router.now())
        peer_r, peer_w = await asyncio.open_connection(HOST, port)
        peer_w.write(Preamble(Kind.CONNECT, route_id(idurl)).encode())
        await until(lambda: idurl in tokens)
        node_r, node_w = await asyncio.open_connection(HOST, port)
        node_w.write(Preamble(Kind.ACCEPT, tokens[idurl]).encode())
        return peer_r, peer_w, node_r, node_w

    _, flooder, _, deaf = await pair(ALICE)  # ALICE's side never reads
    carol_peer_r, carol_peer_w, carol_r, carol_w = await pair(CAROL)

    async def flood() -> None:
        chunk = b"x" * 65536
        for _ in range(2000):  # 128 MB at most; the router stops taking long before
            flooder.write(chunk)
            await flooder.drain()

    flooding = asyncio.create_task(flood())
    for n in range(20):  # meanwhile Carol's pair echoes, both ways
        carol_peer_w.write(b"ping %d;" % n)
        assert await carol_r.readexactly(len(b"ping %d;" % n)) == b"ping %d;" % n
        carol_w.write(b"pong;")
        assert await carol_peer_r.readexactly(5) == b"pong;"
        await asyncio.sleep(0.05)

    with pytest.raises((ConnectionError, OSError)):
        await asyncio.wait_for(flooding, 5)  # cut by the router
    alice, carol = router.relay.stats()
    assert (alice["connections"], alice["dropped"]) == (0, 1)
    assert carol["connections"] == 1
    assert largest <= 1024 * 1024  # flow control held the router's buffer near its high water
    carol_peer_w.write(b"still here")
    assert await carol_r.readexactly(10) == b"still here"
    for writer in (deaf, carol_peer_w, carol_w):
        writer.close()


async def test_a_preamble_cut_short_is_closed_at_the_preamble_timeout(net: Network):
    endpoint, router = await net.router(ROUTER)
    router.preamble_timeout = 0.3
    reader, writer = await asyncio.open_connection(HOST, endpoint.address[1])
    writer.write(MAGIC + bytes((Kind.CONNECT,)))  # the id never comes
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.25 <= loop.time() - started < 2
    writer.close()
    await until(lambda: router.connections == 0)


async def test_relayed_sockets_from_one_address_are_capped(net: Network):
    endpoint, router = await net.router(ROUTER, RelayLimits(connections_per_address=3))
    port = endpoint.address[1]
    held = []
    for _ in range(3):  # preambles not finished yet: each holds a relayed socket
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(MAGIC)
        held.append((reader, writer))
    await until(lambda: router.connections == 3)
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(MAGIC)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the fourth is refused at once
    assert router.connections == 3
    for _, held_writer in held:
        held_writer.close()
    writer.close()
