"""p2p: one stream between two processes against raw loopback TCP between two processes, and
handshakes per second against bare Noise XX handshakes.

Both sides of the throughput figures run on uvloop and glibc's tunables, as the node does, each
a child process (``python -m tests.bench.bench_p2p receive|send p2p|raw|sealed PORT_A PORT_B
[SIZE]``; :mod:`tests.bench.streams`). Identities are served from memory (no identity server):
the figures are the session's, not HTTP's.

``sealed`` is the stream's ceiling: the same two processes doing only the per-byte work the
design requires (Noise-sized records, AES-256-GCM sealed by the sender and opened by the
receiver) and nothing else — no framing, no flow control, no session.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from noise.connection import Keypair, NoiseConnection

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import load_private_key, public_key_to_openssh
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory
from bitdust.p2p.events import PeerIdentityNeeded
from bitdust.p2p.handshake import LocalPeer, PeerIdentity
from bitdust.p2p.session import Session
from bitdust.p2p.transport import READ_BUFFER, IncomingStream, P2PEndpoint
from bitdust.p2p.wire import MAX_PLAINTEXT, NOISE_PROTOCOL, TAG_SIZE
from tests.bench.streams import (
    CHUNK,
    Measured,
    Span,
    measured_rate,
    report_rate,
    start_child,
    stop,
    stream_rate,
    with_ceiling,
)
from tests.identity.conftest import VECTORS
from tests.ports import free_port

HOST = "127.0.0.1"
ALICE = "http://host-a.com/alice.xml"
BOB = "http://host-b.com/bob.xml"
#: The ceiling's AES-256 key, known to both processes (nothing secret is sent).
SEALING_KEY = bytes(range(32))
NONCE = struct.Struct(">4xQ")  # Noise's AESGCM nonce


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


class _Receiver:
    """A receiving child's CPU seconds over its stream: from the stream's start until ``done``."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.began = 0.0

    def begin(self) -> None:
        self.began = time.process_time()

    def cpu(self) -> float:
        return time.process_time() - self.began


class _Discard(asyncio.Protocol):
    """The raw receiver: bytes dropped as they arrive, as the p2p receiver's protocol gets
    them (asyncio's StreamReader would add its own buffering and pauses to the baseline)."""

    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.receiver.begin()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self.transport.close()  # the sender's read() returns: it read everything
        self.receiver.done.set()
        return False


class _Open(asyncio.BufferedProtocol):
    """The ceiling's receiver: each record (2-byte length, AES-256-GCM message) opened as soon
    as it is whole, its plaintext dropped. Read into one buffer and opened straight from it, as
    the session does; a record split between reads is joined first."""

    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver
        self.aead = AESGCM(SEALING_KEY)
        self.buffer = memoryview(bytearray(READ_BUFFER))
        self.plaintext = memoryview(bytearray(MAX_PLAINTEXT))
        self.held = bytearray()
        self.nonce = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.receiver.begin()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = self.buffer[:nbytes]
        used = 0
        while self.held and used < nbytes:  # complete the record an earlier read began
            whole = 2 + int.from_bytes(self.held[:2], "big") if len(self.held) >= 2 else 2
            take = min(whole - len(self.held), nbytes - used)
            self.held += data[used : used + take]
            used += take
            if len(self.held) == whole > 2:
                self._open(memoryview(self.held)[2:])
                self.held.clear()
        while nbytes - used >= 2:
            end = used + 2 + (data[used] << 8 | data[used + 1])
            if end > nbytes:
                break
            self._open(data[used + 2 : end])
            used = end
        self.held += data[used:]

    def _open(self, message: bytes | memoryview) -> None:
        plaintext = self.plaintext[: len(message) - TAG_SIZE]
        self.aead.decrypt_into(NONCE.pack(self.nonce), message, None, plaintext)
        self.nonce += 1

    def eof_received(self) -> bool:
        self.transport.close()
        self.receiver.done.set()
        return False


async def _receive(kind: str, ports: dict[str, int]) -> None:
    """Receive one stream; print the CPU seconds it took once it is whole."""
    receiver = _Receiver()
    if kind == "p2p":
        endpoint = await _endpoint(BOB, ports)

        async def sink(peer: str, stream: IncomingStream) -> None:
            receiver.begin()
            async for _ in stream:
                pass
            receiver.done.set()

        endpoint.on_stream("blob", sink)
    else:
        protocol = {"raw": _Discard, "sealed": _Open}[kind]
        await asyncio.get_running_loop().create_server(lambda: protocol(receiver), HOST, ports[BOB])
    print("ready", flush=True)
    await receiver.done.wait()
    print(receiver.cpu(), flush=True)
    await asyncio.sleep(0.2)  # let the last credit or FIN leave


def _sealed(chunk: memoryview, nonces: list[int]) -> list[bytes]:
    """``chunk`` as the ceiling's records: AES-256-GCM messages of Noise's largest size, each
    after its 2-byte length (``nonces`` holds the next nonce)."""
    aead = AESGCM(SEALING_KEY)
    records: list[bytes] = []
    for start in range(0, len(chunk), MAX_PLAINTEXT):
        message = aead.encrypt(NONCE.pack(nonces[0]), chunk[start : start + MAX_PLAINTEXT], None)
        nonces[0] += 1
        records += (len(message).to_bytes(2, "big"), message)
    return records


async def _send_tcp(
    ports: dict[str, int], size: int, records: Callable[[memoryview], list[bytes]]
) -> Measured:
    """Bare TCP, from the first byte until the receiver has read the last; each chunk is
    written as ``records(chunk)``."""
    data = memoryview(b"x" * CHUNK)
    reader, writer = await asyncio.open_connection(HOST, ports[BOB])
    span = Span()
    for _ in range(size // CHUNK):
        writer.writelines(records(data))
        await writer.drain()
    writer.write_eof()
    await reader.read()  # the receiver closes once it read everything
    measured = span.measured(size)
    writer.close()
    return measured


async def _send(kind: str, ports: dict[str, int], size: int) -> Measured:
    if kind == "p2p":
        return await stream_rate(await _endpoint(ALICE, ports), BOB, size)
    if kind == "sealed":
        nonces = [0]
        return await _send_tcp(ports, size, lambda chunk: _sealed(chunk, nonces))
    return await _send_tcp(ports, size, lambda chunk: [chunk])


@dataclass(frozen=True)
class Direct:
    """One stream between two processes: the sender's measure, and the receiver's CPU."""

    sent: Measured
    receiver_cpu: float


def direct_rate(kind: str, size: int) -> Direct:
    ports = [free_port(host=HOST), free_port(host=HOST)]
    receiver = start_child("tests.bench.bench_p2p", "receive", kind, *ports)
    try:
        sent = measured_rate("tests.bench.bench_p2p", "send", kind, *ports, size)
    finally:
        printed = stop(receiver)
    return Direct(sent, float(printed))


def _cpu_per_gib(runs: list[Direct], size: int) -> dict[str, float]:
    """The median CPU seconds per GiB of each side of ``runs``."""
    per_gib = 2**30 / size
    return {
        "sender": round(statistics.median(d.sent.cpu for d in runs) * per_gib, 3),
        "receiver": round(statistics.median(d.receiver_cpu for d in runs) * per_gib, 3),
    }


def _pair(cpu: dict[str, float]) -> str:
    return f"{cpu['sender']:.2f} + {cpu['receiver']:.2f}"


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
    runs: dict[str, list[Direct]] = {"raw": [], "p2p": [], "sealed": []}
    for _ in range(repeats):  # interleaved, so all see the same load
        for kind, measured in runs.items():
            measured.append(direct_rate(kind, size))
    raw, p2p, sealed = (statistics.median(d.sent.rate for d in runs[kind]) / 1e6 for kind in runs)
    raw_limit = 0.5 * raw
    cpu = {kind: _cpu_per_gib(measured, size) for kind, measured in runs.items()}
    count = 20 if smoke else 500
    ours = handshakes_per_second(count)
    bare = bare_noise_handshakes_per_second(count)
    return [
        *with_ceiling(
            {"name": "p2p.stream_throughput", "figure": p2p,
             "unit": "MB/s", "limit": raw_limit, "target": "above",
             "cpu_seconds_per_gib": {"stream": cpu["p2p"], "ceiling": cpu["sealed"],
                                     "raw": cpu["raw"]},
             "note": f"{size // CHUNK} MiB, one stream, sender and receiver processes on 2 "
                     "cores; limit = half of raw TCP (1 MiB writes, a Protocol that drops what "
                     f"it reads); CPU s/GiB, sender + receiver: stream {_pair(cpu['p2p'])}, "
                     f"ceiling {_pair(cpu['sealed'])}, raw {_pair(cpu['raw'])} (half raw's "
                     "rate leaves each side twice raw's CPU per byte, if neither waits)"},
            sealed,
            "the same sender and receiver processes doing only the per-byte work the design "
            "requires (1 MiB writes cut into Noise-sized 64 KiB records, AES-256-GCM sealed by "
            "the sender, opened by the receiver; no framing, no flow control, no session)",
        ),
        {"name": "p2p.handshakes_per_second", "figure": ours, "unit": "1/s",
         "limit": 0.5 * bare, "target": "above",
         "note": "sans-IO, both sides in one process (one core), identity binding and checks "
                 "included; limit = half of bare Noise XX"},
    ]  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] in (["receive"], ["send"]):
        kind, port_a, port_b = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        ports = {ALICE: port_a, BOB: port_b}
        if sys.argv[1] == "receive":
            uvloop.run(_receive(kind, ports))
        else:
            report_rate(_send(kind, ports, int(sys.argv[5])))
    else:
        import json

        print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
