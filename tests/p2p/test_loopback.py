"""Two p2p endpoints on real sockets on 127.0.0.1: requests, streams both ways, bad peers.

Identities come from an in-memory "identity server" (signed documents, verified by the
directory as fetched ones are); contacts are the endpoints' real listening ports.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time

import pytest

from bitdust.identity.document import Identity, format_date
from bitdust.identity.errors import IdentityNotFound
from bitdust.identity.keys import public_key_to_openssh
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory
from bitdust.p2p.errors import P2PError, PeerUnreachable, RequestRefused
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.session import MAX_PENDING_REQUESTS, SessionTimeouts
from bitdust.p2p.streams import MAX_STREAMS, STREAM_WINDOW
from bitdust.p2p.transport import EndpointLimits, IncomingStream, P2PEndpoint
from tests.p2p.peers import ALICE, BOB, MALLORY, identity_key

HOST = "127.0.0.1"


def document(
    idurl: str, key_name: str, port: int, revision: int = 1, sources: tuple[str, ...] = ()
) -> Identity:
    key = identity_key(key_name)
    unsigned = Identity(
        sources=sources or (idurl,),
        contacts=(f"tcp://{HOST}:{port}",),
        date=format_date(datetime.date(2026, 11, 25)),
        revision=revision,
        publickey=public_key_to_openssh(key),
    )
    return sign(unsigned, key)


class Net:
    """Identity documents served from memory, and the endpoints that use them."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.fetches: list[str] = []
        self.endpoints: list[P2PEndpoint] = []

    async def fetch(self, idurl: str) -> bytes:
        self.fetches.append(idurl)
        if idurl not in self.documents:
            raise IdentityNotFound(f"{idurl}: no such identity")
        return self.documents[idurl]

    async def endpoint(
        self,
        idurl: str,
        key_name: str,
        limits: EndpointLimits | None = None,
        *,
        claims: str = "",
        sources: tuple[str, ...] = (),
    ) -> P2PEndpoint:
        """An endpoint whose document is served at ``idurl``; its handshakes claim ``claims``
        and its document names ``sources`` (``idurl`` unless told)."""
        local = LocalPeer.from_identity_key(identity_key(key_name), claims or idurl, 1)

        async def resolve(host: str) -> str:
            return host

        directory = Directory(self.fetch)
        endpoint = P2PEndpoint(lambda: local, directory, resolve, limits or EndpointLimits())
        _, port = await endpoint.listen(HOST, 0)
        self.documents[idurl] = document(idurl, key_name, port, 1, sources).to_xml()
        self.endpoints.append(endpoint)
        return endpoint


@pytest.fixture
async def net():
    net = Net()
    yield net
    for endpoint in net.endpoints:
        await endpoint.close()


async def echo(peer: str, data: bytes) -> bytes:
    return peer.encode() + b" said " + data


async def test_requests_both_ways_over_one_reused_session(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    alice.on_request("echo", echo)
    bob.on_request("echo", echo)
    assert await alice.request(BOB, "echo", b"hi") == ALICE.encode() + b" said hi"
    assert await bob.request(ALICE, "echo", b"yo") == BOB.encode() + b" said yo"
    assert await alice.request(BOB, "echo", b"again") == ALICE.encode() + b" said again"
    [session] = alice.sessions()
    assert session["idurl"] == BOB and session["direction"] == "outgoing"
    assert session["bytes_out"] > 0 and session["bytes_in"] > 0
    assert [s["direction"] for s in bob.sessions()] == ["incoming"]


async def test_a_document_that_names_another_peers_idurl_does_not_speak_for_it(net: Net):
    """Anyone can list someone else's IDURL among the sources of their own identity. Once this
    node has fetched such a document, the other IDURL is still looked up at its own address: the
    one who listed it is neither dialled in its place nor taken for it (a document's sources
    must all carry the same name, so Mallory names herself bob.xml on her own host)."""
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    mallory_as_bob = "http://host-c.com/bob.xml"
    impostor = await net.endpoint(
        mallory_as_bob, "mallory", claims=BOB, sources=(BOB, mallory_as_bob)
    )
    bob.on_request("who", lambda peer, data: asyncio.sleep(0, b"bob"))
    impostor.on_request("who", lambda peer, data: asyncio.sleep(0, b"mallory"))
    alice.on_request("who", lambda peer, data: asyncio.sleep(0, b"alice"))
    await alice.directory.peer(mallory_as_bob)  # as when Mallory's node first contacts Alice
    assert await alice.request(BOB, "who", b"") == b"bob"
    with pytest.raises(P2PError):  # Alice ends the session: the key is not bob.xml's
        await impostor.request(ALICE, "who", b"")
    assert [(s["idurl"], s["direction"]) for s in alice.sessions()] == [(BOB, "outgoing")]


async def test_a_peer_asked_for_by_another_of_its_sources_is_its_own_first_source(net: Net):
    """A document's first source is the IDURL its sessions claim, so a peer asked for by another
    source is dialled as that one; but only when the first source's own document names it back
    (Mallory's document at host-c.com/bob.xml, naming bob.xml first, is refused)."""
    alice = await net.endpoint(ALICE, "alice")
    bob_on_host_d = "http://host-d.com/bob.xml"
    bob = await net.endpoint(BOB, "bob", sources=(BOB, bob_on_host_d))
    net.documents[bob_on_host_d] = net.documents[BOB]
    bob.on_request("who", lambda peer, data: asyncio.sleep(0, b"bob"))
    assert await alice.request(bob_on_host_d, "who", b"") == b"bob"
    assert [s["idurl"] for s in alice.sessions()] == [BOB]
    mallory_as_bob = "http://host-c.com/bob.xml"
    await net.endpoint(mallory_as_bob, "mallory", sources=(BOB, mallory_as_bob))
    with pytest.raises(PeerUnreachable, match="whose identity does not name"):
        await alice.request(mallory_as_bob, "who", b"")


async def test_handler_errors_reach_the_requester_as_its_reason(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")

    async def refuse(peer: str, data: bytes) -> bytes:
        raise P2PError("quota exceeded for " + peer)

    bob.on_request("store", refuse)
    with pytest.raises(RequestRefused, match=f"quota exceeded for {ALICE}"):
        await alice.request(BOB, "store", b"x")
    with pytest.raises(RequestRefused, match="does not serve 'nothing' requests"):
        await alice.request(BOB, "nothing", b"x")


async def test_events_reach_their_handler(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    got = asyncio.get_running_loop().create_future()
    bob.on_event("hello", lambda peer, data: got.set_result((peer, data)))
    await alice.send_event(BOB, "hello", b"there")
    assert await asyncio.wait_for(got, 5) == (ALICE, b"there")


async def receive_all(stream: IncomingStream, sink: dict) -> None:
    digest = hashlib.sha256()
    size = 0
    async for chunk in stream:
        digest.update(chunk)
        size += len(chunk)
    sink[stream.header] = (size, digest.hexdigest())


async def send_all(endpoint: P2PEndpoint, idurl: str, payload: bytes, name: bytes) -> None:
    stream = await endpoint.open_stream(idurl, "blob", name)
    view = memoryview(payload)
    for start in range(0, len(payload), 4 * 1024 * 1024):
        await stream.write(view[start : start + 4 * 1024 * 1024])
    await stream.finish()


async def test_large_streams_both_ways_arrive_whole(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    received: dict[bytes, tuple[int, str]] = {}
    alice.on_stream("blob", lambda peer, stream: receive_all(stream, received))
    bob.on_stream("blob", lambda peer, stream: receive_all(stream, received))
    size = 32 * 1024 * 1024
    to_bob = bytes(range(256)) * (size // 256)
    to_alice = hashlib.sha256(b"seed").digest() * (size // 32)
    await alice.connect(BOB)
    started = time.perf_counter()
    async with asyncio.timeout(60):
        await asyncio.gather(
            send_all(alice, BOB, to_bob, b"to-bob"), send_all(bob, ALICE, to_alice, b"to-alice")
        )
    elapsed = time.perf_counter() - started
    assert received[b"to-bob"] == (size, hashlib.sha256(to_bob).hexdigest())
    assert received[b"to-alice"] == (size, hashlib.sha256(to_alice).hexdigest())
    print(f"2 x 32 MiB both ways in {elapsed:.2f} s: {2 * size / elapsed / 1e6:.0f} MB/s")


async def test_streams_from_two_peers_at_once_arrive_whole_through_one_read_buffer(net: Net):
    """An endpoint's connections all read into one buffer: what one read brought must be
    handled, or copied, before another connection's read overwrites it."""
    alice = await net.endpoint(ALICE, "alice")
    mallory = await net.endpoint(MALLORY, "mallory")
    bob = await net.endpoint(BOB, "bob")
    received: dict[bytes, tuple[int, str]] = {}
    bob.on_stream("blob", lambda peer, stream: receive_all(stream, received))
    size = 8 * 1024 * 1024 + 12345  # records straddle the reads
    from_alice = hashlib.sha256(b"alice").digest() * (size // 32)
    from_mallory = hashlib.sha256(b"mallory").digest() * (size // 32)
    async with asyncio.timeout(60):
        await asyncio.gather(
            send_all(alice, BOB, from_alice, b"from-alice"),
            send_all(mallory, BOB, from_mallory, b"from-mallory"),
        )
    assert received[b"from-alice"] == (len(from_alice), hashlib.sha256(from_alice).hexdigest())
    assert received[b"from-mallory"] == (
        len(from_mallory),
        hashlib.sha256(from_mallory).hexdigest(),
    )


async def test_an_idle_deadline_moved_by_traffic_closes_the_session_only_when_reached(net: Net):
    """The shell keeps its timer callback when traffic moves the idle deadline later: the
    callback fires early, finds nothing due, and is set again for the new deadline."""
    limits = EndpointLimits(timeouts=SessionTimeouts(idle=1.0))
    alice = await net.endpoint(ALICE, "alice", limits)
    bob = await net.endpoint(BOB, "bob", limits)
    bob.on_request("echo", echo)
    await alice.request(BOB, "echo", b"first")
    await asyncio.sleep(0.6)
    await alice.request(BOB, "echo", b"moves the deadline")
    await asyncio.sleep(0.6)  # past the first deadline, 0.4 s before the second
    assert [s["state"] for s in alice.sessions()] == ["open"]
    await asyncio.sleep(1.0)
    assert alice.sessions() == []


async def test_refused_stream_fails_the_writer_with_the_reason(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    await net.endpoint(BOB, "bob")  # takes no streams at all
    stream = await alice.open_stream(BOB, "blob", b"x")
    with pytest.raises(RequestRefused, match="takes no 'blob' streams"):
        await stream.write(b"y" * 10)
        await stream.finish()


async def test_a_peer_whose_key_is_not_its_identitys_is_refused(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    bob.on_request("echo", echo)
    port = bob.address[1]
    net.documents[BOB] = document(BOB, "mallory", port).to_xml()  # bob's key changed
    with pytest.raises(PeerUnreachable, match="not signed by its identity key"):
        await alice.request(BOB, "echo", b"secret")
    assert alice.sessions() == [] or all(s["state"] != "open" for s in alice.sessions())


async def test_contacts_are_fetched_again_when_the_cached_ones_fail(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    bob.on_request("echo", echo)
    await alice.directory.peer(BOB)  # cached with bob's first port
    await bob.close()
    bob = await net.endpoint(BOB, "bob")  # bob moved to another port, published it
    bob.on_request("echo", echo)
    assert await alice.request(BOB, "echo", b"found you") == ALICE.encode() + b" said found you"
    assert net.fetches.count(BOB) == 2


async def test_unreachable_peer_names_each_contact_that_failed(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    port = bob.address[1]
    await bob.close()
    with pytest.raises(PeerUnreachable, match=f"tcp://{HOST}:{port}: .*refused"):
        await alice.request(BOB, "echo", b"x")
    with pytest.raises(PeerUnreachable, match="no such identity"):
        await alice.request("http://host-z.com/nobody.xml", "echo", b"x")


async def test_stalled_handshake_is_cut_and_other_sessions_carry_on(net: Net):
    limits = EndpointLimits(timeouts=SessionTimeouts(handshake=0.3))
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob", limits)
    bob.on_request("echo", echo)
    reader, writer = await asyncio.open_connection(HOST, bob.address[1])
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by bob, nothing sent
    assert time.monotonic() - started < 2
    writer.close()
    assert await alice.request(BOB, "echo", b"ok") == ALICE.encode() + b" said ok"


async def test_sessions_from_one_address_are_capped(net: Net):
    limits = EndpointLimits(sessions_per_address=3)
    bob = await net.endpoint(BOB, "bob", limits)
    held = [await asyncio.open_connection(HOST, bob.address[1]) for _ in range(3)]
    reader, writer = await asyncio.open_connection(HOST, bob.address[1])
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the fourth is dropped at once
    writer.close()
    assert len(bob.sessions()) == 3
    for _, held_writer in held:
        held_writer.close()


async def test_a_reader_that_stops_stops_the_writer_within_one_window(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    size = 8 * 1024 * 1024
    opened: asyncio.Future[IncomingStream] = asyncio.get_running_loop().create_future()
    gate, read = asyncio.Event(), []

    async def slow_reader(peer: str, stream: IncomingStream) -> None:
        opened.set_result(stream)
        await gate.wait()
        read.extend([chunk async for chunk in stream])

    bob.on_stream("blob", slow_reader)
    stream = await alice.open_stream(BOB, "blob")
    writing = asyncio.create_task(stream.write(b"w" * size))
    incoming = await asyncio.wait_for(opened, 5)
    await asyncio.sleep(0.3)
    assert not writing.done()
    assert incoming.connection.session.unread_bytes() == STREAM_WINDOW
    gate.set()
    await asyncio.wait_for(writing, 5)
    await asyncio.wait_for(stream.finish(), 5)
    assert sum(map(len, read)) == size


async def test_a_stream_its_handler_leaves_unread_is_refused(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")

    async def ignore(peer: str, stream: IncomingStream) -> None:
        return None

    bob.on_stream("blob", ignore)
    stream = await alice.open_stream(BOB, "blob")
    with pytest.raises(RequestRefused, match="stopped reading"):
        async with asyncio.timeout(5):
            await stream.write(b"w" * (4 * STREAM_WINDOW))
            await stream.finish()


async def test_finish_returns_only_once_the_handler_kept_the_stream(net: Net):
    """A stream read to its end is not yet a success: the receiving service may still refuse
    it (a supplier whose disk filled while it wrote), and only its return accepts it."""
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    kept: list[bytes] = []
    release = asyncio.Event()

    async def keep_unless_told(peer: str, stream: IncomingStream) -> None:
        data = b"".join([chunk async for chunk in stream])
        await release.wait()
        if stream.header == b"refuse":
            stream.refuse("the disk is full")
        else:
            kept.append(data)

    bob.on_stream("blob", keep_unless_told)
    for header in (b"keep", b"refuse"):
        stream = await alice.open_stream(BOB, "blob", header)
        await stream.write(b"z" * 1000)
        finishing = asyncio.ensure_future(stream.finish())
        await asyncio.sleep(0.2)
        assert not finishing.done()  # read whole, but the handler has not returned
        release.set()
        if header == b"keep":
            await asyncio.wait_for(finishing, 5)
            assert kept == [b"z" * 1000]
        else:
            with pytest.raises(RequestRefused, match="the disk is full"):
                await asyncio.wait_for(finishing, 5)
        release.clear()


def test_sessions_and_streams_work_on_uvloop_too():
    """The node runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[bytes, dict]:
        net = Net()
        try:
            alice = await net.endpoint(ALICE, "alice")
            bob = await net.endpoint(BOB, "bob")
            bob.on_request("echo", echo)
            received: dict[bytes, tuple[int, str]] = {}
            bob.on_stream("blob", lambda peer, stream: receive_all(stream, received))
            reply = await alice.request(BOB, "echo", b"uv")
            await send_all(alice, BOB, b"u" * (3 * STREAM_WINDOW), b"uv-blob")
            return reply, received
        finally:
            for endpoint in net.endpoints:
                await endpoint.close()

    reply, received = uvloop.run(asyncio.wait_for(scenario(), 30))
    assert reply == ALICE.encode() + b" said uv"
    assert received[b"uv-blob"] == (
        3 * STREAM_WINDOW,
        hashlib.sha256(b"u" * (3 * STREAM_WINDOW)).hexdigest(),
    )


async def test_finished_streams_and_requests_leave_nothing_behind(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    received: dict[bytes, tuple[int, str]] = {}
    bob.on_stream("blob", lambda peer, stream: receive_all(stream, received))
    bob.on_request("echo", echo)
    for number in range(20):
        await send_all(alice, BOB, b"s" * 1000, b"%d" % number)
        await alice.request(BOB, "echo", b"x")
    await asyncio.sleep(0.05)  # the last handler returns after its stream's end
    assert len(received) == 20
    [bob_side] = bob._connections
    [alice_side] = alice._connections
    assert bob_side._receiving == {} and bob_side._tasks == set()
    assert alice_side._sending == {} and alice_side._requests == {}
    assert bob_side.session.unread_bytes() == 0


async def test_a_contact_that_does_not_resolve_is_skipped_for_the_next_one(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    bob.on_request("echo", echo)
    port = bob.address[1]
    unsigned = Identity(
        sources=(BOB,),
        contacts=("tcp://nowhere.invalid:7771", f"tcp://{HOST}:{port}"),
        date=format_date(datetime.date(2026, 11, 25)),
        publickey=public_key_to_openssh(identity_key("bob")),
    )
    net.documents[BOB] = sign(unsigned, identity_key("bob")).to_xml()

    async def resolve(host: str) -> str:
        if host == "nowhere.invalid":
            raise LookupError("cannot resolve host 'nowhere.invalid'")
        return host

    alice.resolve = resolve
    assert await alice.request(BOB, "echo", b"hi") == ALICE.encode() + b" said hi"
    bob_only = await net.endpoint("http://host-c.com/carol.xml", "carol")
    net.documents[BOB] = sign(
        unsigned.replace(contacts=unsigned.contacts[:1]), identity_key("bob")
    ).to_xml()
    bob_only.resolve = resolve
    with pytest.raises(PeerUnreachable, match=r"cannot resolve host 'nowhere\.invalid'"):
        await bob_only.request(BOB, "echo", b"hi")


async def test_calls_beyond_the_wire_limits_wait_for_a_slot_instead_of_failing(net: Net):
    alice = await net.endpoint(ALICE, "alice")
    bob = await net.endpoint(BOB, "bob")
    gate = asyncio.Event()

    async def slow(peer: str, data: bytes) -> bytes:
        await gate.wait()
        return data

    bob.on_request("slow", slow)
    received: dict[bytes, tuple[int, str]] = {}
    bob.on_stream("blob", lambda peer, stream: receive_all(stream, received))
    calls = [
        asyncio.create_task(alice.request(BOB, "slow", b"%d" % n, timeout=10))
        for n in range(MAX_PENDING_REQUESTS + 3)
    ]
    streams = [await alice.open_stream(BOB, "blob", b"%d" % n) for n in range(MAX_STREAMS)]
    ninth = asyncio.create_task(alice.open_stream(BOB, "blob", b"ninth"))
    await asyncio.sleep(0.2)
    assert not any(call.done() for call in calls) and not ninth.done()
    gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert answers == [b"%d" % n for n in range(MAX_PENDING_REQUESTS + 3)]
    await asyncio.wait_for(streams[0].finish(), 5)
    stream = await asyncio.wait_for(ninth, 5)
    await stream.write(b"late")
    await asyncio.wait_for(stream.finish(), 5)
    assert received[b"ninth"][0] == 4
