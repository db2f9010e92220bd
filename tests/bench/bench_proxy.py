"""proxy: one p2p stream relayed through a router against the same stream direct (target: the
relayed one at 0.6 of the direct one or better), the router's memory per routed client, and how
the router scales with 1, 10 and 100 routed clients (curves: relayed throughput with every client
receiving at once, an idle client's round trip, the router's RSS).

Processes as on real hosts, each started as a node is (:mod:`tests.bench.streams`): the
sender (``python -m tests.bench.bench_proxy send ... SIZE``; this one for the curves), the router
(``... router ...``) and routed nodes with no listening socket (``... routed ...`` for the
one-stream figure, ``... clients ... FIRST COUNT`` for the curves: many routed clients, each its
own identity and session with the router, share a process). The direct figure is bench_p2p's
two-process stream, measured in the same run, interleaved. Identities are served from memory.

The relayed stream's reference is bench_p2p's direct stream through the barest relay there is
(``python -m tests.bench.bench_proxy forward PORT TARGET_PORT``): one connection spliced to the
receiver both ways in two blocking loops, with no preamble, limits or event loop. What it costs
is a third process's share of the kernel's loopback TCP, which any relay on this host pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import (
    generate_private_key,
    load_private_key,
    private_key_to_pem,
    public_key_to_openssh,
)
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.transport import EndpointLimits, IncomingStream, P2PEndpoint
from bitdust.proxy.client import ProxyClient
from bitdust.proxy.protocol import REGISTER
from bitdust.proxy.relay import Relay, RelayLimits, route_id
from bitdust.proxy.router import Router
from bitdust.proxy.splice import HOLD
from tests.bench import bench_p2p
from tests.bench.bench_p2p import ALICE, BOB, HOST
from tests.bench.streams import (
    CHUNK,
    Measured,
    measured_rate,
    report_rate,
    start_child,
    stop,
    stream_rate,
    streams_rate,
    with_ceiling,
)
from tests.identity.conftest import VECTORS
from tests.ports import free_port

ROUTER = "http://host-c.com/router.xml"
ECHO = "bench/echo"
MEMORY_CLIENTS = 200
CLIENT_PROCESSES = 2  # the routed clients of the scaling curves share these (2 cores)
ONE_HOST = EndpointLimits(sessions_per_address=1000)
# every relayed socket comes from 127.0.0.1 too: two per routed client's pair
ROUTER_LIMITS = RelayLimits(routes=MEMORY_CLIENTS, connections_per_address=1000)


def _keys(router_key: Path) -> dict[str, Any]:
    return {
        ALICE: load_private_key(VECTORS / "test_key.pem"),
        BOB: load_private_key(VECTORS / "other_key.pem"),
        ROUTER: load_private_key(router_key),
    }


def _client_name(index: int) -> str:
    return f"http://host-e.com/client{index}.xml"


def _write_identity(folder: Path, idurl: str, key: Any, contacts: tuple[str, ...]) -> None:
    """A routed client's identity, where :class:`_Network` finds it by route."""
    unsigned = Identity(
        sources=(idurl,),
        contacts=contacts,
        date=format_date(datetime.date.today()),
        publickey=public_key_to_openssh(key),
    )
    (folder / f"{route_id(idurl)}.xml").write_bytes(sign(unsigned, key).to_xml())


async def _resolve(host: str) -> str:
    return host


class _Network:
    """The bench's identities, served from memory (the many routed clients' from files in the
    router key's folder), one directory for every endpoint of a process."""

    def __init__(self, router_key: Path, ports: dict[str, int]) -> None:
        self.folder = router_key.parent
        self.keys = _keys(router_key)
        contacts = {
            ALICE: f"tcp://{HOST}:{ports[ALICE]}",
            ROUTER: f"tcp://{HOST}:{ports[ROUTER]}",
            BOB: f"tcp://{HOST}:{ports[ROUTER]}/{route_id(BOB)}",  # routed: no listener
        }
        self.documents = {}
        for name, key in self.keys.items():
            unsigned = Identity(
                sources=(name,),
                contacts=(contacts[name],),
                date=format_date(datetime.date.today()),
                publickey=public_key_to_openssh(key),
            )
            self.documents[name] = sign(unsigned, key).to_xml()
        self.directory = Directory(self._fetch)

    async def _fetch(self, wanted: str) -> bytes:
        if wanted in self.documents:
            return self.documents[wanted]
        return (self.folder / f"{route_id(wanted)}.xml").read_bytes()

    def endpoint(self, idurl: str, key: Any = None) -> P2PEndpoint:
        local = LocalPeer.from_identity_key(key or self.keys[idurl], idurl, 1)
        # every client here comes from 127.0.0.1: the per-address cap is for hosts, not this bench
        return P2PEndpoint(lambda: local, self.directory, _resolve, ONE_HOST)


async def _router(router_key: Path, ports: dict[str, int]) -> None:
    endpoint = _Network(router_key, ports).endpoint(ROUTER)
    await endpoint.listen(HOST, ports[ROUTER])
    Router(Relay(ROUTER_LIMITS), endpoint, f"tcp://{HOST}:{ports[ROUTER]}")
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):  # until the parent ends
        print(_rss(), flush=True)  # each line asks for the resident memory


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _drain(peer: str, stream: IncomingStream) -> None:
    async for _ in stream:
        pass


async def _echo(peer: str, data: bytes) -> bytes:
    return data


async def _only_router(exclude: object) -> list[str]:
    return [ROUTER]


def _unpublished(contacts: list[str]) -> None:
    """Routed clients' contacts are in their identity files already."""


async def _routed(router_key: Path, ports: dict[str, int]) -> None:
    endpoint = _Network(router_key, ports).endpoint(BOB)
    done = asyncio.Event()

    async def sink(peer: str, stream: IncomingStream) -> None:
        await _drain(peer, stream)
        done.set()

    endpoint.on_stream("blob", sink)
    client = ProxyClient(endpoint, _only_router, _unpublished)
    task = asyncio.get_running_loop().create_task(client.run())
    while client.router is None:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await done.wait()
    await asyncio.sleep(0.2)  # let the last credit leave
    task.cancel()


async def _routed_clients(router_key: Path, ports: dict[str, int], first: int, count: int) -> None:
    """Clients ``first`` .. ``first + count - 1``, each its own identity, endpoint and session
    with the router, in one process; they drain streams and echo requests until stdin ends."""
    network = _Network(router_key, ports)
    clients = []
    for index in range(first, first + count):
        key = load_private_key(router_key.parent / f"client{index}.pem")
        endpoint = network.endpoint(_client_name(index), key)
        endpoint.on_stream("blob", _drain)
        endpoint.on_request(ECHO, _echo)
        clients.append(ProxyClient(endpoint, _only_router, _unpublished))
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(client.run()) for client in clients]
    async with asyncio.timeout(60):
        while any(client.router is None for client in clients):
            await asyncio.sleep(0.01)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent ends
    for task in tasks:
        task.cancel()
    for client in clients:
        await client.endpoint.close()


async def _send(router_key: Path, ports: dict[str, int], size: int) -> Measured:
    endpoint = _Network(router_key, ports).endpoint(ALICE)
    await endpoint.listen(HOST, ports[ALICE])
    return await stream_rate(endpoint, BOB, size)


def _child(role: str, router_key: Path, ports: dict[str, int], *extra: int) -> tuple[object, ...]:
    """The arguments of ``python -m`` for a child process of this module in ``role``."""
    return ("tests.bench.bench_proxy", role, router_key, ports[ALICE], ports[ROUTER], *extra)


def _start(role: str, router_key: Path, ports: dict[str, int], *extra: int) -> subprocess.Popen:
    """A child process of this module in ``role``, once it said it is ready."""
    return start_child(*_child(role, router_key, ports, *extra))


def _router_rss(router: subprocess.Popen) -> int:
    assert router.stdin is not None and router.stdout is not None
    router.stdin.write(b"rss\n")
    router.stdin.flush()
    return int(router.stdout.readline())


def relayed_rate(router_key: Path, size: int) -> float:
    ports = {ALICE: free_port(host=HOST), ROUTER: free_port(host=HOST)}
    router = _start("router", router_key, ports)
    routed = None
    try:
        routed = _start("routed", router_key, ports)
        return measured_rate(*_child("send", router_key, ports, size)).rate
    finally:
        if routed is not None:
            stop(routed)
        stop(router)


def forwarded_rate(size: int) -> float:
    """The direct stream (bench_p2p's sender and receiver) through :func:`_forward`."""
    ports = [free_port(host=HOST) for _ in range(3)]  # Alice, Bob, the forwarder
    receiver = start_child("tests.bench.bench_p2p", "receive", "p2p", ports[0], ports[1])
    forwarder = None
    try:
        forwarder = start_child("tests.bench.bench_proxy", "forward", ports[2], ports[1])
        sent = measured_rate("tests.bench.bench_p2p", "send", "p2p", ports[0], ports[2], size)
        return sent.rate
    finally:
        if forwarder is not None:
            stop(forwarder)
        stop(receiver)


def _forward(port: int, target: int) -> None:
    """The reference's relay: the first connection to ``port`` spliced to ``target`` both ways."""
    with socket.create_server((HOST, port)) as server:
        print("ready", flush=True)
        inbound, _ = server.accept()
    outbound = socket.create_connection((HOST, target))
    for src, dst in ((inbound, outbound), (outbound, inbound)):
        threading.Thread(target=_splice_all, args=(src, dst), daemon=True).start()
    sys.stdin.read()  # until the parent ends


def _splice_all(src: socket.socket, dst: socket.socket) -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, HOLD)  # as the router's pipes
    with contextlib.suppress(OSError):  # either end may reset: this direction is over
        while moved := os.splice(src.fileno(), write_end, HOLD):
            while moved:
                moved -= os.splice(read_end, dst.fileno(), moved)
        dst.shutdown(socket.SHUT_WR)


async def _clients(router_key: Path, ports: dict[str, int], count: int, child: Any) -> list[int]:
    """Resident memory of the router: alone, with ``count`` plain sessions, and with the same
    sessions registered as routes."""
    network = _Network(router_key, ports)
    names = [f"http://host-e.com/memory{n}.xml" for n in range(count)]
    endpoints = []
    for name in names:
        key = generate_private_key(1024)
        _write_identity(network.folder, name, key, ())
        endpoints.append(network.endpoint(name, key))
    figures = [_router_rss(child)]
    for endpoint in endpoints:
        await endpoint.connect(ROUTER)
    figures.append(_router_rss(child))
    for endpoint in endpoints:
        await endpoint.request(ROUTER, REGISTER, b"")
    figures.append(_router_rss(child))
    for endpoint in endpoints:
        await endpoint.close()
    return figures


def router_memory(router_key: Path, count: int) -> tuple[float, float]:
    """Bytes of router memory per routed client, and per plain p2p session (the limit's base)."""
    ports = {ALICE: free_port(host=HOST), ROUTER: free_port(host=HOST)}
    child = _start("router", router_key, ports)
    try:
        alone, sessions, routes = uvloop.run(_clients(router_key, ports, count, child))
    finally:
        stop(child)
    return (routes - alone) / count, (sessions - alone) / count


@dataclass(frozen=True)
class Scaling:
    """One router with ``clients`` routed clients registered."""

    clients: int
    rate: float  # bytes per second, every client receiving its share of the bytes at once
    round_trips: list[float]  # seconds, one idle client's echo while all are registered
    rss: int  # bytes of router memory with them all registered and idle


async def _load(
    router_key: Path, ports: dict[str, int], count: int, size: int, round_trips: int
) -> tuple[list[float], float]:
    """Echo round trips to client 0 while all are idle, then a stream to every client at once."""
    endpoint = _Network(router_key, ports).endpoint(ALICE)
    first = _client_name(0)
    await endpoint.connect(first)
    times = []
    for _ in range(round_trips):
        started = time.perf_counter()
        await endpoint.request(first, ECHO, b"x" * 64)
        times.append(time.perf_counter() - started)
    names = [_client_name(index) for index in range(count)]
    return times, (await streams_rate(endpoint, names, size // count)).rate


def router_scaling(router_key: Path, count: int, size: int, round_trips: int) -> Scaling:
    """A fresh router and ``count`` routed clients (keys ``client<i>.pem`` beside the router's)
    in up to :data:`CLIENT_PROCESSES` processes; ``size`` bytes in all are streamed to them."""
    ports = {ALICE: free_port(host=HOST), ROUTER: free_port(host=HOST)}
    for index in range(count):
        name = _client_name(index)
        key = load_private_key(router_key.parent / f"client{index}.pem")
        _write_identity(
            router_key.parent, name, key, (f"tcp://{HOST}:{ports[ROUTER]}/{route_id(name)}",)
        )
    router = _start("router", router_key, ports)
    children = []
    try:
        share = -(-count // CLIENT_PROCESSES)
        for first in range(0, count, share):
            children.append(_start("clients", router_key, ports, first, min(share, count - first)))
        rss = _router_rss(router)
        load = _load(router_key, ports, count, size, round_trips)
        times, rate = uvloop.run(asyncio.wait_for(load, 120))
    finally:
        for child in children:
            stop(child)
        stop(router)
    return Scaling(count, rate, times, rss)


def _scaling_curves(points: list[Scaling], size: int) -> list[dict[str, Any]]:
    shared = f"sender, router, {CLIENT_PROCESSES} client processes on 2 cores"
    rows = []
    for point in points:
        ms = sorted(1000 * t for t in point.round_trips)
        rows += [
            {"curve": "router relayed throughput by routed clients", "x": point.clients,
             "x_unit": "clients", "figure": point.rate / 1e6, "unit": "MB/s",
             "note": f"{size // CHUNK} MiB split among them, all at once; {shared}"},
            {"curve": "router round trip by routed clients", "x": point.clients,
             "x_unit": "clients", "figure": statistics.median(ms), "unit": "ms",
             "p99": ms[round(0.99 * (len(ms) - 1))],
             "note": f"median of {len(ms)} 64-byte echoes to one client, all registered and idle"},
            {"curve": "router round trip p99 by routed clients", "x": point.clients,
             "x_unit": "clients", "figure": ms[round(0.99 * (len(ms) - 1))], "unit": "ms",
             "note": f"p99 of the same {len(ms)} echoes"},
            {"curve": "router RSS by routed clients", "x": point.clients, "x_unit": "clients",
             "figure": point.rss / 2**20, "unit": "MiB",
             "note": "router process, all registered and idle, one relayed session open"},
        ]  # fmt: skip
    return rows


def run(smoke: bool) -> list[dict[str, Any]]:
    size = (16 if smoke else 512) * CHUNK
    repeats = 1 if smoke else 5
    scale = (1, 3, 10) if smoke else (1, 10, 100)
    scale_size = (4 if smoke else 64) * CHUNK
    with tempfile.TemporaryDirectory() as tmp:
        router_key = Path(tmp) / "router.pem"
        router_key.write_bytes(private_key_to_pem(generate_private_key()))
        direct, relayed, forwarded = [], [], []
        for _ in range(repeats):  # interleaved, so all see the same load
            direct.append(bench_p2p.direct_rate("p2p", size).sent.rate)
            relayed.append(relayed_rate(router_key, size))
            forwarded.append(forwarded_rate(size))
        print(f"# bench_proxy: direct {statistics.median(direct) / 1e6:.0f} MB/s, relayed "
              f"{statistics.median(relayed) / 1e6:.0f} MB/s, forwarded (reference) "
              f"{statistics.median(forwarded) / 1e6:.0f} MB/s", file=sys.stderr)  # fmt: skip
        per_client, per_session = router_memory(router_key, 20 if smoke else MEMORY_CLIENTS)
        for index in range(max(scale)):
            key = generate_private_key(1024)
            (Path(tmp) / f"client{index}.pem").write_bytes(private_key_to_pem(key))
        points = []
        for count in scale:
            points.append(router_scaling(router_key, count, scale_size, 20 if smoke else 300))
            print(f"# bench_proxy: {count} routed clients: {points[-1].rate / 1e6:.0f} MB/s",
                  file=sys.stderr)  # fmt: skip
    limit, reference = 0.6 * statistics.median(direct) / 1e6, statistics.median(forwarded) / 1e6
    return [
        *with_ceiling(
            {"name": "proxy.relayed_stream_throughput", "figure": statistics.median(relayed) / 1e6,
             "unit": "MB/s", "limit": limit, "target": "above",
             "note": f"{size // CHUNK} MiB, one stream, sender, router, routed: 3 processes, "
                     "2 cores; limit = 0.6 of the same stream direct"},
            reference,
            "the direct stream's sender and receiver through the barest relay (one process "
            "splicing the two sockets in two blocking loops: no preamble, no limits, no event "
            "loop), what any relay on this host pays for its share of loopback TCP",
            label="reference",
        ),
        {"name": "proxy.router_memory_per_client", "figure": per_client / 1024, "unit": "KiB",
         "limit": 2 * per_session / 1024, "target": "below",
         "note": "router RSS growth per registered routed node (its session and route); "
                 "limit = twice the growth per plain p2p session, same process"},
        *_scaling_curves(points, scale_size),
    ]  # fmt: skip


def _main(role: str, *args: str) -> None:
    if role == "forward":
        _forward(int(args[0]), int(args[1]))
        return
    key_path, alice_port, router_port, *extra = args
    bench_ports = {ALICE: int(alice_port), ROUTER: int(router_port)}
    if role == "clients":
        first_client, client_count = map(int, extra)
        uvloop.run(_routed_clients(Path(key_path), bench_ports, first_client, client_count))
    elif role == "send":
        report_rate(_send(Path(key_path), bench_ports, int(extra[0])))
    else:
        uvloop.run((_router if role == "router" else _routed)(Path(key_path), bench_ports))


if __name__ == "__main__":
    _main(*sys.argv[1:])
