"""The router's shell on real sockets, with raw peers that break the rules: one that stops
reading is cut after the stall timeout with bounded memory, while another pair carries on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from bitdust.p2p.preamble import MAGIC, Kind, Preamble
from bitdust.proxy.relay import RelayLimits, route_id
from bitdust.proxy.router import Router
from bitdust.proxy.splice import PipePool
from tests.proxy.network import HOST, Network, until

ALICE = "http://host-a.com/alice.xml"
CAROL = "http://host-a.com/carol.xml"
ROUTER = "http://host-c.com/router.xml"


Ends = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def pairing(router: Router, port: int) -> Callable[[str], Awaitable[tuple[*Ends, *Ends]]]:
    """Raw relayed pairs through ``router``: a peer that connects to a route, and the routed
    node that takes it (told of the token directly, not over a p2p session)."""
    tokens: dict[str, str] = {}
    router._notify = lambda idurl, token: tokens.update({idurl: token}) is None  # type: ignore[method-assign]

    async def pair(idurl: str) -> tuple[*Ends, *Ends]:
        router.relay.register(idurl, router.now())
        tokens.pop(idurl, None)
        peer_r, peer_w = await asyncio.open_connection(HOST, port)
        peer_w.write(Preamble(Kind.CONNECT, route_id(idurl)).encode())
        await until(lambda: idurl in tokens)
        node_r, node_w = await asyncio.open_connection(HOST, port)
        node_w.write(Preamble(Kind.ACCEPT, tokens[idurl]).encode())
        return peer_r, peer_w, node_r, node_w

    return pair


@pytest.fixture
async def net():
    network = Network()
    yield network
    await network.close()


async def test_a_routed_node_that_stops_reading_loses_its_pair_and_the_other_pair_carries_on(
    net: Network,
):
    endpoint, router = await net.router(ROUTER, RelayLimits(stall_timeout=1.0))
    pair = pairing(router, endpoint.address[1])
    largest = 0
    report = router.relay.buffered

    def record(conn: int, size: int, now: float) -> None:
        nonlocal largest
        largest = max(largest, size)
        report(conn, size, now)

    router.relay.buffered = record  # type: ignore[method-assign]

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


@pytest.mark.parametrize("pipes", [0, 1, 16], ids=["memory", "one-pipe", "pipes"])
async def test_pairs_carry_bytes_both_ways_intact_through_pipes_or_memory(net: Network, pipes: int):
    """Bytes wait in a pipe (splice) while the pool has one free, else in memory: the same
    bytes arrive either way, the first of them sent before the pair existed."""
    endpoint, router = await net.router(ROUTER)
    router.pipes = PipePool(limit=pipes)
    pair = pairing(router, endpoint.address[1])
    up, down = os.urandom(6 * 1024 * 1024 + 17), os.urandom(3 * 1024 * 1024 + 5)
    peer_r, peer_w, node_r, node_w = await pair(ALICE)
    carol = await pair(CAROL)  # a second pair at once shares the pool
    peer_w.write(up[:1000])  # perhaps before the routed node took the token
    peer_w.write(up[1000:])
    node_w.write(down)
    carol[1].write(down)
    received = await asyncio.gather(
        node_r.readexactly(len(up)), peer_r.readexactly(len(down)), carol[2].readexactly(len(down))
    )
    assert received == [up, down, down]
    assert router.relay.bytes_relayed == len(up) + 2 * len(down)
    assert router.pipes.open <= pipes
    for writer in (peer_w, node_w, carol[1], carol[3]):
        writer.close()
    await until(lambda: router.connections == 0)


async def test_a_pair_closed_by_the_router_still_delivers_what_the_router_read(net: Network):
    """The routed node leaves the router while the router holds bytes for it: the route's pairs
    close, and each side first gets every byte the router took for it (then the end)."""
    endpoint, router = await net.router(ROUTER)
    pair = pairing(router, endpoint.address[1])
    data = os.urandom(16 * 1024 * 1024)
    _, peer_w, node_r, node_w = await pair(ALICE)
    peer_w.write(data)  # the routed node does not read yet: the router fills up and waits
    held = 0

    def holding() -> bool:
        nonlocal held
        held = sum(route.buffered for route in router.relay.routes.values())
        return held > 0

    await until(holding)
    await asyncio.sleep(0.2)  # the sockets' buffers fill behind it
    taken = router.relay.bytes_relayed
    router.relay.unregister(ALICE)
    router.pump()
    received = await asyncio.wait_for(node_r.read(), 10)
    assert held > 0 and len(received) == taken and received == data[:taken]
    await until(lambda: router.connections == 0)
    for writer in (peer_w, node_w):
        writer.close()


async def test_a_route_over_its_rate_is_slowed_not_cut(net: Network):
    rate = 2 * 1024 * 1024
    limits = RelayLimits(bytes_per_second=rate, burst_seconds=0.5)
    endpoint, router = await net.router(ROUTER, limits)
    pair = pairing(router, endpoint.address[1])
    _, peer_w, node_r, node_w = await pair(ALICE)
    data = os.urandom(3 * rate)
    peer_w.write(data)
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = await asyncio.wait_for(node_r.readexactly(len(data)), 20)
    assert received == data
    # the bucket's burst, then the rate: no faster than that, and the pair still open
    assert loop.time() - started >= (len(data) - rate * 0.5 - 4 * 1024 * 1024) / rate
    assert router.connections == 2
    for writer in (peer_w, node_w):
        writer.close()


async def test_a_closed_router_leaves_no_descriptor_open(net: Network):
    before = len(os.listdir("/proc/self/fd"))
    endpoint, router = await net.router(ROUTER)
    pair = pairing(router, endpoint.address[1])
    ends = [await pair(name) for name in (ALICE, CAROL)]
    for _, peer_w, _, node_w in ends:
        peer_w.write(os.urandom(2 * 1024 * 1024))
        node_w.write(b"hello")
    await asyncio.gather(*(node_r.readexactly(2 * 1024 * 1024) for _, _, node_r, _ in ends))
    assert router.pipes.open > 0
    router.close()
    for _, peer_w, _, node_w in ends:
        peer_w.close()
        node_w.close()
    await endpoint.close()
    await asyncio.sleep(0.1)
    assert len(os.listdir("/proc/self/fd")) == before


async def test_a_side_that_resets_mid_transfer_ends_its_pair_only(net: Network):
    endpoint, router = await net.router(ROUTER)
    pair = pairing(router, endpoint.address[1])
    alice_peer_r, alice_peer_w, alice_r, alice_w = await pair(ALICE)
    carol_peer_r, carol_peer_w, carol_r, carol_w = await pair(CAROL)
    alice_peer_w.write(os.urandom(8 * 1024 * 1024))  # the router holds some of it when...
    await alice_r.readexactly(1024 * 1024)
    sock = alice_w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    alice_w.transport.abort()  # ...the routed node resets its connection
    # its peer's end closes (reset, as the peer was still sending when the router closed it)
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(alice_peer_r.read(), 5) == b""
    await until(lambda: router.connections == 2)
    carol_peer_w.write(b"still here")
    assert await carol_r.readexactly(10) == b"still here"
    carol_w.write(b"and here")
    assert await carol_peer_r.readexactly(8) == b"and here"
    for writer in (alice_peer_w, carol_peer_w, carol_w):
        writer.close()
