"""A routed node (no listening socket) and a direct node talk through a router on real loopback
sockets: requests and streams both ways, opaque to the router, and a lost router replaced."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import Collection

import pytest

from bitdust.p2p.errors import SessionEnded
from bitdust.p2p.transport import IncomingStream, P2PEndpoint
from bitdust.proxy.client import ClientState, ProxyClient
from bitdust.proxy.relay import RelayLimits, route_id
from tests.proxy.network import Network, until

ROUTER = "http://host-c.com/router.xml"
ROUTER2 = "http://host-d.com/router2.xml"
ALICE = "http://host-a.com/alice.xml"  # routed
BOB = "http://host-b.com/bob.xml"  # direct
MARKER = b"PLAINTEXT-MARKER-the-router-must-never-see-this"
STREAM_SIZE = 8 * 1024 * 1024


@pytest.fixture
async def net():
    network = Network()
    yield network
    await network.close()


async def echo(peer: str, data: bytes) -> bytes:
    return peer.encode() + b" said " + data


def serve(endpoint: P2PEndpoint, received: dict[bytes, tuple[str, int, str]]) -> None:
    async def take(peer: str, stream: IncomingStream) -> None:
        digest, size = hashlib.sha256(), 0
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
        received[stream.header] = (peer, size, digest.hexdigest())

    endpoint.on_request("echo", echo)
    endpoint.on_stream("blob", take)


async def send(endpoint: P2PEndpoint, idurl: str, name: bytes, payload: bytes) -> None:
    stream = await endpoint.open_stream(idurl, "blob", name)
    await stream.write(payload)
    await stream.finish()


def payload() -> bytes:
    return (MARKER + os.urandom(1000)) * (STREAM_SIZE // (len(MARKER) + 1000))


async def test_routed_and_direct_nodes_talk_through_a_router_that_sees_only_ciphertext(
    net: Network,
):
    _, router = await net.router(ROUTER, tee=True)
    alice, client = await net.routed(ALICE, [ROUTER])
    bob = await net.direct(BOB)
    received: dict[bytes, tuple[str, int, str]] = {}
    serve(alice, received)
    serve(bob, received)
    assert client.registration is not None
    assert client.registration.contact.startswith(router.contact + "/")
    assert alice.server is None  # no listening socket: reachable only through the router

    assert await bob.request(ALICE, "echo", MARKER) == BOB.encode() + b" said " + MARKER
    assert await alice.request(BOB, "echo", MARKER) == ALICE.encode() + b" said " + MARKER
    to_alice, to_bob = payload(), payload()
    await send(bob, ALICE, b"to-alice", to_alice)
    await send(alice, BOB, b"to-bob", to_bob)
    await until(lambda: len(received) == 2)

    assert received[b"to-alice"] == (BOB, len(to_alice), hashlib.sha256(to_alice).hexdigest())
    assert received[b"to-bob"] == (ALICE, len(to_bob), hashlib.sha256(to_bob).hexdigest())
    [session] = [s for s in bob.sessions() if s["idurl"] == ALICE]
    assert session["route"] == "routed"
    [through] = net.tees[0:1]
    assert len(through.recorded) > len(to_alice) + len(to_bob)  # it all went through the tee
    assert MARKER not in through.recorded
    assert MARKER[:16] not in through.recorded
    [route] = router.relay.stats()
    assert route["idurl"] == ALICE and route["bytes_relayed"] > len(to_alice) + len(to_bob)


async def test_a_lost_router_is_replaced_and_the_new_contact_published(net: Network):
    endpoint1, router1 = await net.router(ROUTER)
    _, router2 = await net.router(ROUTER2)
    alice, client = await net.routed(ALICE, [ROUTER, ROUTER2])
    bob = await net.direct(BOB)
    serve(alice, {})
    assert client.router == ROUTER
    assert await bob.request(ALICE, "echo", b"one") == BOB.encode() + b" said one"

    router1.close()  # the router dies: its listener and every session go at once
    await endpoint1.close()
    await until(lambda: client.router == ROUTER2)

    assert router2.contact.encode() in net.documents[ALICE]
    assert await bob.request(ALICE, "echo", b"two") == BOB.encode() + b" said two"
    assert client.changes == 2
    [route] = router2.relay.stats()
    assert route["idurl"] == ALICE


async def test_an_idempotent_request_in_flight_when_the_router_dies_is_answered_after_the_move(
    net: Network,
):
    endpoint1, router1 = await net.router(ROUTER, RelayLimits(lease=60))  # found by watching
    await net.router(ROUTER2)
    alice, client = await net.routed(ALICE, [ROUTER, ROUTER2])
    bob = await net.direct(BOB)
    calls: list[bytes] = []
    entered = asyncio.Event()

    async def slow_once(peer: str, data: bytes) -> bytes:
        calls.append(data)
        if calls.count(data) == 1:  # the first time, it is still working when the router dies
            if len(calls) == 2:
                entered.set()
            await asyncio.sleep(30)
        return b"done " + data

    alice.on_request("slow", slow_once)
    retried = asyncio.create_task(bob.request(ALICE, "slow", b"a", timeout=15, idempotent=True))
    once = asyncio.create_task(bob.request(ALICE, "slow", b"b", timeout=15))
    await entered.wait()
    router1.close()
    await endpoint1.close()

    assert await asyncio.wait_for(retried, 15) == b"done a"
    with pytest.raises(SessionEnded, match="connection lost"):
        await once  # not idempotent: the caller decides
    assert client.router == ROUTER2 and calls.count(b"a") == 2 and calls.count(b"b") == 1


async def test_a_stream_cut_by_a_dying_router_fails_at_both_ends_and_the_next_one_arrives_whole(
    net: Network,
):
    """The router dies mid-stream: neither end takes the cut stream for a whole one (the sender's
    write or finish fails, the receiver's handler ends), and once the routed node has moved, the
    same bytes go through again intact."""
    endpoint1, router1 = await net.router(ROUTER)
    await net.router(ROUTER2)
    alice, client = await net.routed(ALICE, [ROUTER, ROUTER2])
    bob = await net.direct(BOB)
    received: dict[bytes, tuple[str, int, str]] = {}
    failed: list[BaseException] = []
    half = asyncio.Event()

    async def take(peer: str, stream: IncomingStream) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in stream:
                digest.update(chunk)
                size += len(chunk)
                if size >= STREAM_SIZE // 2:
                    half.set()
        except (SessionEnded, asyncio.CancelledError) as exc:  # its session ended: cancelled
            failed.append(exc)
            raise
        received[stream.header] = (peer, size, digest.hexdigest())

    alice.on_stream("blob", take)
    data = payload()
    cut = asyncio.create_task(send(bob, ALICE, b"cut", data))
    await asyncio.wait_for(half.wait(), 10)
    router1.close()  # the router dies with the stream half through it
    await endpoint1.close()
    with pytest.raises(SessionEnded):
        await asyncio.wait_for(cut, 10)
    await until(lambda: len(failed) == 1)
    await until(lambda: client.router == ROUTER2)
    await send(bob, ALICE, b"again", data)
    await until(lambda: b"again" in received)
    assert b"cut" not in received
    assert received[b"again"] == (BOB, len(data), hashlib.sha256(data).hexdigest())


async def test_without_routers_it_asks_less_and_less_often_and_withdraws_a_lost_routers_contact(
    net: Network,
):
    endpoint1, router1 = await net.router(ROUTER)
    net.publish(ALICE, [])
    alice = net.endpoint(ALICE)
    asked: list[float] = []
    published: list[list[str]] = []

    async def only_the_first_router(exclude: Collection[str]) -> list[str]:
        asked.append(asyncio.get_running_loop().time())
        return [ROUTER] if ROUTER not in exclude else []

    client = ProxyClient(alice, only_the_first_router, published.append, retry_after=0.05)
    net.tasks.append(asyncio.create_task(client.run()))
    await until(lambda: client.router == ROUTER)
    router1.close()
    await endpoint1.close()
    await until(lambda: published[-1:] == [[]])
    assert published == [[router1.contact + "/" + route_id(ALICE)], []]
    asked.clear()
    await asyncio.sleep(0.8)
    pauses = [later - earlier for earlier, later in itertools.pairwise(asked)]
    assert len(asked) <= 5 and pauses == sorted(pauses)  # 0.1, 0.2, 0.4...: not every 0.05 s
    assert client.state is ClientState.FINDING and client.router is None
