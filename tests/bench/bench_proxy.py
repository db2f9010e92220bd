"""proxy: one p2p stream relayed through a router against the same stream direct (target: the
relayed one at 0.6 of the direct one or better).

Three processes for the relayed figure, as on real hosts: the sender (this one), the router
(``python -m tests.bench.bench_proxy router ...``) and the routed receiver, which has no
listening socket (``... routed ...``). The direct figure is bench_p2p's two-process stream,
measured in the same run, interleaved. Identities are served from memory.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import subprocess
import sys
import tempfile
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
from tests.bench import bench_p2p
from tests.bench.bench_p2p import ALICE, BOB, HOST, _free_port
from tests.bench.streams import CHUNK, stream_rate
from tests.identity.conftest import VECTORS

ROUTER = "http://host-c.com/router.xml"
MEMORY_CLIENTS = 200
ONE_HOST = EndpointLimits(sessions_per_address=1000)


def _keys(router_key: Path) -> dict[str, Any]:
    return {
        ALICE: load_private_key(VECTORS / "test_key.pem"),
        BOB: load_private_key(VECTORS / "other_key.pem"),
        ROUTER: load_private_key(router_key),
    }


def _endpoint(idurl: str, router_key: Path, ports: dict[str, int]) -> P2PEndpoint:
    keys = _keys(router_key)
    contacts = {
        ALICE: f"tcp://{HOST}:{ports[ALICE]}",
        ROUTER: f"tcp://{HOST}:{ports[ROUTER]}",
        BOB: f"tcp://{HOST}:{ports[ROUTER]}/{route_id(BOB)}",  # routed: no listener of its own
    }
    documents = {}
    for name, key in keys.items():
        unsigned = Identity(
            sources=(name,),
            contacts=(contacts[name],),
            date=format_date(datetime.date.today()),
            publickey=public_key_to_openssh(key),
        )
        documents[name] = sign(unsigned, key).to_xml()

    async def fetch(wanted: str) -> bytes:
        if wanted in documents:
            return documents[wanted]
        return (router_key.parent / f"{route_id(wanted)}.xml").read_bytes()  # memory's clients

    async def resolve(host: str) -> str:
        return host

    local = LocalPeer.from_identity_key(keys[idurl], idurl, 1)
    # every client here comes from 127.0.0.1: the per-address cap is for hosts, not this bench
    return P2PEndpoint(lambda: local, Directory(fetch), resolve, ONE_HOST)


async def _router(router_key: Path, ports: dict[str, int]) -> None:
    endpoint = _endpoint(ROUTER, router_key, ports)
    await endpoint.listen(HOST, ports[ROUTER])
    Router(Relay(RelayLimits(routes=MEMORY_CLIENTS)), endpoint, f"tcp://{HOST}:{ports[ROUTER]}")
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):  # until the parent ends
        print(_rss(), flush=True)  # each line asks for the resident memory


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _routed(router_key: Path, ports: dict[str, int]) -> None:
    endpoint = _endpoint(BOB, router_key, ports)
    done = asyncio.Event()

    async def sink(peer: str, stream: IncomingStream) -> None:
        async for _ in stream:
            pass
        done.set()

    async def routers(exclude: object) -> list[str]:
        return [ROUTER]

    endpoint.on_stream("blob", sink)
    client = ProxyClient(endpoint, routers, lambda contacts: None)
    task = asyncio.get_running_loop().create_task(client.run())
    while client.router is None:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await done.wait()
    await asyncio.sleep(0.2)  # let the last credit leave
    task.cancel()


async def _send(router_key: Path, ports: dict[str, int], size: int) -> float:
    endpoint = _endpoint(ALICE, router_key, ports)
    await endpoint.listen(HOST, ports[ALICE])
    return await stream_rate(endpoint, BOB, size)


def relayed_rate(router_key: Path, size: int) -> float:
    ports = {ALICE: _free_port(), ROUTER: _free_port()}
    args = [str(router_key), str(ports[ALICE]), str(ports[ROUTER])]
    module = [sys.executable, "-m", "tests.bench.bench_proxy"]
    router = subprocess.Popen(
        [*module, "router", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    routed = None
    try:
        assert router.stdout is not None and router.stdout.readline() == b"ready\n"
        routed = subprocess.Popen([*module, "routed", *args], stdout=subprocess.PIPE)
        assert routed.stdout is not None and routed.stdout.readline() == b"ready\n"
        return uvloop.run(asyncio.wait_for(_send(router_key, ports, size), 120))
    finally:
        if routed is not None:
            routed.wait(30)
        router.communicate(b"", timeout=30)


async def _clients(router_key: Path, ports: dict[str, int], count: int, child: Any) -> list[int]:
    """Resident memory of the router: alone, with ``count`` plain sessions, and with the same
    sessions registered as routes."""
    router_doc = _endpoint(ROUTER, router_key, ports)
    names = [f"http://host-e.com/client{n}.xml" for n in range(count)]
    endpoints = []
    for name in names:
        key = generate_private_key(1024)
        unsigned = Identity(
            sources=(name,),
            contacts=(),
            date=format_date(datetime.date.today()),
            publickey=public_key_to_openssh(key),
        )
        (router_key.parent / f"{route_id(name)}.xml").write_bytes(sign(unsigned, key).to_xml())
        local = LocalPeer.from_identity_key(key, name, 1)
        endpoints.append(
            P2PEndpoint(lambda local=local: local, router_doc.directory, router_doc.resolve)
        )

    def rss() -> int:
        child.stdin.write(b"rss\n")
        child.stdin.flush()
        return int(child.stdout.readline())

    figures = [rss()]
    for endpoint in endpoints:
        await endpoint.connect(ROUTER)
    figures.append(rss())
    for endpoint in endpoints:
        await endpoint.request(ROUTER, REGISTER, b"")
    figures.append(rss())
    for endpoint in endpoints:
        await endpoint.close()
    return figures


def router_memory(router_key: Path, count: int) -> tuple[float, float]:
    """Bytes of router memory per routed client, and per plain p2p session (the limit's base)."""
    ports = {ALICE: _free_port(), ROUTER: _free_port()}
    args = [str(router_key), str(ports[ALICE]), str(ports[ROUTER])]
    command = [sys.executable, "-m", "tests.bench.bench_proxy", "router", *args]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        alone, sessions, routes = uvloop.run(_clients(router_key, ports, count, child))
    finally:
        child.communicate(b"", timeout=30)
    return (routes - alone) / count, (sessions - alone) / count


def run(smoke: bool) -> list[dict[str, Any]]:
    size = (16 if smoke else 512) * CHUNK
    repeats = 1 if smoke else 5
    with tempfile.TemporaryDirectory() as tmp:
        router_key = Path(tmp) / "router.pem"
        router_key.write_bytes(private_key_to_pem(generate_private_key()))
        direct, relayed = [], []
        for _ in range(repeats):  # interleaved, so both see the same load
            direct.append(bench_p2p.direct_rate("p2p", size))
            relayed.append(relayed_rate(router_key, size))
        per_client, per_session = router_memory(router_key, 20 if smoke else MEMORY_CLIENTS)
    return [
        {"name": "proxy.relayed_stream_throughput", "figure": statistics.median(relayed) / 1e6,
         "unit": "MB/s", "limit": 0.6 * statistics.median(direct) / 1e6, "target": "above",
         "note": f"{size // CHUNK} MiB, one stream, sender/router/routed in three processes; "
                 "limit = 0.6 of the same stream direct"},
        {"name": "proxy.router_memory_per_client", "figure": per_client / 1024, "unit": "KiB",
         "limit": 2 * per_session / 1024, "target": "below",
         "note": "router RSS growth per registered routed node (its session and route); "
                 "limit = twice the growth per plain p2p session, same process"},
    ]  # fmt: skip


if __name__ == "__main__":
    role, key_path, alice_port, router_port = sys.argv[1:5]
    bench_ports = {ALICE: int(alice_port), ROUTER: int(router_port)}
    main = _router if role == "router" else _routed
    uvloop.run(main(Path(key_path), bench_ports))
