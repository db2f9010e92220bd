"""p2p: one stream between two processes against raw loopback TCP between two processes, and
handshakes per second against bare Noise XX handshakes.

Both sides of the throughput figures run on uvloop, as the node does; the receiver is a child
process (``python -m tests.bench.bench_p2p receive p2p|raw PORT_A PORT_B``). Identities are
served from memory (no identity server): the figures are the session's, not HTTP's.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import uvloop
from noise.connection import Keypair, NoiseConnection

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import load_private_key, public_key_to_openssh
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory
from bitdust.p2p.events import PeerIdentityNeeded
from bitdust.p2p.handshake import LocalPeer, PeerIdentity
from bitdust.p2p.session import Session
from bitdust.p2p.transport import IncomingStream, P2PEndpoint
from bitdust.p2p.wire import NOISE_PROTOCOL
from tests.bench.streams import CHUNK, stream_rate
from tests.identity.conftest import VECTORS

HOST = "127.0.0.1"
ALICE = "http://host-a.com/alice.xml"
BOB = "http://host-b.com/bob.xml"


def _keys() -> dict[str, Any]:
    return {
        ALICE: load_private_key(VECTORS / "test_key.pem"),
        BOB: load_private_key(VECTORS / "other_key.pem"),
    }


def _documents(ports: dict[str, int]) -> dict[str, bytes]:
    documents = {}
    for idurl, key in _keys().items():
        unsigned = Identity(
            sources=(idurl,),
            contacts=(f"tcp://{HOST}:{ports[idurl]}",),
            date=format_date(datetime.date.today()),
            publickey=public_key_to_openssh(key),
        )
        documents[idurl] = sign(unsigned, key).to_xml()
    return documents


async def _endpoint(idurl: str, ports: dict[str, int]) -> P2PEndpoint:
    documents = _documents(ports)
    local = LocalPeer.from_identity_key(_keys()[idurl], idurl, 1)

    async def fetch(wanted: str) -> bytes:
        return documents[wanted]

    async def resolve(host: str) -> str:
        return host

    endpoint = P2PEndpoint(lambda: local, Directory(fetch), resolve)
    await endpoint.listen(HOST, ports[idurl])
    return endpoint


class _Discard(asyncio.Protocol):
    """The raw receiver: bytes dropped as they arrive, as the p2p receiver's protocol gets
    them (asyncio's StreamReader would add its own buffering and pauses to the baseline)."""

    def __init__(self, done: asyncio.Event) -> None:
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self.transport.close()  # the sender's read() returns: it read everything
        self.done.set()
        return False


async def _receive(kind: str, ports: dict[str, int]) -> None:
    done = asyncio.Event()
    if kind == "p2p":
        endpoint = await _endpoint(BOB, ports)

        async def sink(peer: str, stream: IncomingStream) -> None:
            async for _ in stream:
                pass
            done.set()

        endpoint.on_stream("blob", sink)
    else:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _Discard(done), HOST, ports[BOB])
    print("ready", flush=True)
    await done.wait()
    await asyncio.sleep(0.2)  # let the last credit or FIN leave


async def _send_raw(ports: dict[str, int], size: int) -> float:
    """Bytes per second over bare TCP, from the first byte until the receiver has read the last."""
    data = b"x" * CHUNK
    reader, writer = await asyncio.open_connection(HOST, ports[BOB])
    started = time.perf_counter()
    for _ in range(size // CHUNK):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await reader.read()  # the receiver closes once it read everything
    elapsed = time.perf_counter() - started
    writer.close()
    return size / elapsed


async def _send(kind: str, ports: dict[str, int], size: int) -> float:
    if kind == "p2p":
        return await stream_rate(await _endpoint(ALICE, ports), BOB, size)
    return await _send_raw(ports, size)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def stop(child: subprocess.Popen) -> None:
    """Close the child's stdin (the bench's children end with it or with their work) and wait
    for it; one still running 30 s later is killed, so no run leaves a process behind."""
    try:
        child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise


def direct_rate(kind: str, size: int) -> float:
    ports = {ALICE: _free_port(), BOB: _free_port()}
    command = [sys.executable, "-m", "tests.bench.bench_p2p", "receive", kind]
    child = subprocess.Popen([*command, str(ports[ALICE]), str(ports[BOB])], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        return uvloop.run(asyncio.wait_for(_send(kind, ports, size), 120))
    finally:
        stop(child)


def handshakes_per_second(count: int) -> float:
    """Full session handshakes between two cores, identity checks included."""
    keys = _keys()
    alice = LocalPeer.from_identity_key(keys[ALICE], ALICE, 1)
    bob = LocalPeer.from_identity_key(keys[BOB], BOB, 1)
    known = {idurl: PeerIdentity((idurl,), 1, key.public_key()) for idurl, key in keys.items()}
    started = time.perf_counter()
    for _ in range(count):
        a = Session(initiator=True, local=alice, now=0.0, expected_idurl=BOB)
        b = Session(initiator=False, local=bob, now=0.0)
        while not (a.established and b.established):
            for sender, receiver in ((a, b), (b, a)):
                receiver.receive_data(sender.data_to_send(), 0.0)
                while (event := receiver.next_event()) is not None:
                    if isinstance(event, PeerIdentityNeeded):
                        receiver.peer_identity(known[event.idurl], 0.0)
    return count / (time.perf_counter() - started)


def bare_noise_handshakes_per_second(count: int) -> float:
    """The same handshakes with noiseprotocol alone: no payloads, no identity checks."""
    started = time.perf_counter()
    for index in range(count):
        sides = []
        for initiator in (True, False):
            side = NoiseConnection.from_name(NOISE_PROTOCOL)
            if initiator:
                side.set_as_initiator()
            else:
                side.set_as_responder()
            side.set_keypair_from_private_bytes(Keypair.STATIC, bytes([index % 250 + 1]) * 32)
            side.start_handshake()
            sides.append(side)
        a, b = sides
        b.read_message(a.write_message())
        a.read_message(b.write_message())
        b.read_message(a.write_message())
    return count / (time.perf_counter() - started)


def run(smoke: bool) -> list[dict[str, Any]]:
    size = (16 if smoke else 512) * CHUNK
    repeats = 1 if smoke else 5
    raw, p2p = [], []
    for _ in range(repeats):  # interleaved, so both see the same load
        raw.append(direct_rate("raw", size))
        p2p.append(direct_rate("p2p", size))
    count = 20 if smoke else 500
    ours = handshakes_per_second(count)
    bare = bare_noise_handshakes_per_second(count)
    return [
        {"name": "p2p.stream_throughput", "figure": statistics.median(p2p) / 1e6, "unit": "MB/s",
         "limit": 0.5 * statistics.median(raw) / 1e6, "target": "above",
         "note": f"{size // CHUNK} MiB, one stream, sender and receiver processes on 2 cores; "
                 "limit = half of raw TCP (1 MiB writes, a Protocol that drops what it reads)"},
        {"name": "p2p.handshakes_per_second", "figure": ours, "unit": "1/s",
         "limit": 0.5 * bare, "target": "above",
         "note": "sans-IO, both sides in one process (one core), identity binding and checks "
                 "included; limit = half of bare Noise XX"},
    ]  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        kind, port_a, port_b = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        uvloop.run(_receive(kind, {ALICE: port_a, BOB: port_b}))
    else:
        import json

        print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
