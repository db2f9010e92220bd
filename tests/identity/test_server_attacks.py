"""The identity server under the attacks of issue 10, on loopback, bounded in seconds: idle
clients holding the intake, slow HTTP clients, malformed requests. Attackers connect from
127.0.1.3, the legitimate client from 127.0.1.2; each test measures how many legitimate requests
are served while the attack goes on (the figures are printed: ``pytest -s``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bitdust.identity.intake import encode_request, parse_reply
from bitdust.identity.server import ConnectionCaps, ServerLimits, start_identity_server
from bitdust.identity.store import IdentityStore
from tests.identity.conftest import make_identity
from tests.ports import free_port

pytestmark = pytest.mark.timeout(60)

SERVER = "127.0.1.1"
LEGITIMATE = "127.0.1.2"
ATTACKER = "127.0.1.3"


@contextlib.asynccontextmanager
async def identity_server(tmp_path, limits: ServerLimits):
    web_port = free_port(host=SERVER)
    store = IdentityStore(tmp_path / "ids", "host-a.com", web_port)
    handle = await start_identity_server(store, SERVER, web_port, 0, limits=limits)
    try:
        yield handle
    finally:
        await handle.close()


def alice_xml(key, server) -> bytes:
    return make_identity(key, sources=(f"http://host-a.com:{server.web_port}/alice.xml",)).to_xml()


async def submit_from(address: str, port: int, xml: bytes) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(SERVER, port, local_addr=(address, 0))
    try:
        writer.write(encode_request(xml))
        await writer.drain()
        return parse_reply(await asyncio.wait_for(reader.readline(), 5))
    finally:
        writer.close()


async def idle_attacker(port: int, stop: asyncio.Event) -> None:
    """Connects, sends nothing, and reconnects as soon as the server lets go."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(SERVER, port, local_addr=(ATTACKER, 0))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        with contextlib.suppress(OSError):
            await reader.read()
        writer.close()


async def uploads_served_under_idle_attack(tmp_path, key, limits: ServerLimits) -> int:
    """80 idle clients that reconnect; then 20 uploads from another address: how many pass."""
    async with identity_server(tmp_path, limits) as server:
        stop = asyncio.Event()
        attackers = [asyncio.create_task(idle_attacker(server.tcp_port, stop)) for _ in range(80)]
        await asyncio.sleep(0.5)  # every slot the attackers can take is taken
        xml = alice_xml(key, server)
        served = 0
        for _ in range(20):
            ok, _reason = await submit_from(LEGITIMATE, server.tcp_port, xml)
            served += ok
        stop.set()
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
        return served


async def test_idle_clients_cannot_lock_the_intake(tmp_path, key, caplog):
    with caplog.at_level(logging.INFO, logger="bitdust.identity.server"):
        served = await uploads_served_under_idle_attack(tmp_path, key, ServerLimits())
    busy = [r for r in caplog.records if "busy" in r.getMessage()]
    print(f"\nintake under 80 idle reconnecting clients: {served}/20 uploads served, "
          f"{len(busy)} 'busy' log lines")  # fmt: skip
    assert served == 20
    assert len(busy) <= 5  # rate-limited: a line per refusal would be thousands


async def test_without_the_per_address_cap_idle_clients_lock_the_intake_out(tmp_path, key):
    """The attack as the issue found it (one cap for everyone, a 10 s deadline): the figure
    the test above improves on."""
    old = ServerLimits(intake_connections_per_address=64, intake_deadline=10.0)
    served = await uploads_served_under_idle_attack(tmp_path, key, old)
    print(f"\nintake without per-address caps: {served}/20 uploads served")
    assert served == 0


async def slow_http_client(port: int, lifetimes: list[float], refused: list[int]) -> None:
    """Sends a request head one header line every 0.2 s, never finishing it."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(SERVER, port, local_addr=(ATTACKER, 0))
    except OSError:
        refused.append(1)
        return
    try:
        writer.write(b"GET /alice.xml HTTP/1.1\r\nHost: host-a.com\r\n")
        for line in range(100):
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(100), 0.2)
            except TimeoutError:  # still open: one more header line
                writer.write(b"X-Slow-%d: 1\r\n" % line)
                continue
            if answer.startswith(b"HTTP/1.1 503"):
                refused.append(1)
            break  # answered or closed by the server
    except OSError:
        pass
    finally:
        lifetimes.append(time.monotonic() - started)
        writer.close()


async def test_slow_http_clients_are_cut_and_capped(tmp_path, key):
    limits = ServerLimits(
        http_request_deadline=1.0, http_connections=64, http_connections_per_address=16
    )
    async with identity_server(tmp_path, limits) as server:
        server.store.submit(alice_xml(key, server), time.time(), "local")
        lifetimes: list[float] = []
        refused: list[int] = []

        async def slow_until_cut() -> None:
            # each client keeps trickling until the server closes it, then comes back
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                await slow_http_client(server.web_port, lifetimes, refused)

        attackers = [asyncio.create_task(slow_until_cut()) for _ in range(100)]
        await asyncio.sleep(0.3)
        connector = aiohttp.TCPConnector(local_addr=(LEGITIMATE, 0), force_close=True)
        served = 0
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(20):
                url = f"http://{SERVER}:{server.web_port}/alice.xml"
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    served += response.status == 200
                await asyncio.sleep(0.05)
        await asyncio.gather(*attackers)
    longest = max(lifetimes)
    admitted = len(lifetimes) - len(refused)
    print(f"\nHTTP under 100 slow clients: {served}/20 legitimate GETs served; "
          f"{admitted} slow connections admitted, {len(refused)} refused with 503; "
          f"the longest lived {longest:.2f} s")  # fmt: skip
    assert served == 20
    assert longest < 1.0 + 0.5  # the request-head deadline, not forever
    assert refused  # past 16 connections from one address


async def test_malformed_http_requests_log_one_line_each_at_most_without_traceback(
    tmp_path, key, caplog
):
    async with identity_server(tmp_path, ServerLimits()) as server:
        server.store.submit(alice_xml(key, server), time.time(), "local")
        with caplog.at_level(logging.DEBUG):
            for _ in range(200):
                reader, writer = await asyncio.open_connection(
                    SERVER, server.web_port, local_addr=(ATTACKER, 0)
                )
                writer.write(b"GET /alice.xml HTTP/1.1\r\nBad Header Line\r\n\r\n")
                answer = await reader.read()
                writer.close()
                assert answer.split(b" ", 2)[1] == b"400"
            connector = aiohttp.TCPConnector(local_addr=(LEGITIMATE, 0))
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(f"http://{SERVER}:{server.web_port}/alice.xml") as response,
            ):
                assert response.status == 200
    noisy = [r for r in caplog.records if r.name.startswith(("aiohttp", "bitdust.identity"))]
    bad = [r for r in noisy if "bad request" in r.getMessage()]
    print(f"\n200 malformed requests: {len(noisy)} log lines")
    assert all(record.exc_info is None for record in noisy)
    assert 1 <= len(bad) <= 5
    assert "127.0.1.3" in bad[0].getMessage() and "Bad Header Line" in bad[0].getMessage()


def test_connection_caps_hold_per_address_and_in_total():
    caps = ConnectionCaps(total=3, per_address=2)
    assert [caps.admit("127.0.1.3") for _ in range(3)] == [True, True, False]
    assert caps.admit("127.0.1.4") and not caps.admit("127.0.1.5")  # the total is reached
    caps.release("127.0.1.3")
    assert caps.admit("127.0.1.5") and caps.count == 3


def test_http_caps_work_on_uvloop_too(tmp_path, key):
    """The node runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[bytes, bytes]:
        limits = ServerLimits(http_connections_per_address=1)
        async with identity_server(tmp_path, limits) as server:
            server.store.submit(alice_xml(key, server), time.time(), "local")
            _, holder = await asyncio.open_connection(
                SERVER, server.web_port, local_addr=(ATTACKER, 0)
            )
            reader, writer = await asyncio.open_connection(
                SERVER, server.web_port, local_addr=(ATTACKER, 0)
            )
            refused = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            holder.close()
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection(
                SERVER, server.web_port, local_addr=(ATTACKER, 0)
            )
            writer.write(b"GET /alice.xml HTTP/1.0\r\nHost: host-a.com\r\n\r\n")
            served = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return refused, served

    refused, served = uvloop.run(scenario())
    assert refused.startswith(b"HTTP/1.1 503") and refused.endswith(b"try again later\n")
    assert served.startswith(b"HTTP/1.0 200") and b"<identity>" in served


async def test_a_trickled_request_body_is_cut_at_the_body_deadline(tmp_path):
    limits = ServerLimits(http_request_deadline=1.0, http_body_deadline=1.0)
    async with identity_server(tmp_path, limits) as server:
        reader, writer = await asyncio.open_connection(
            SERVER, server.web_port, local_addr=(ATTACKER, 0)
        )
        started = time.monotonic()
        writer.write(
            b"GET /alice.xml HTTP/1.1\r\nHost: host-a.com\r\nContent-Length: 100000\r\n\r\n"
        )
        answer = b""
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 10:
                writer.write(b"a")  # one byte of body every 0.2 s
                await writer.drain()
                try:
                    chunk = await asyncio.wait_for(reader.read(1000), 0.2)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
        lived = time.monotonic() - started
        writer.close()
    assert answer.startswith(b"HTTP/1.1 404")  # answered at once; the body is never read
    assert lived < 1.0 + 0.5


_DESCRIPTOR_SERVER = """
import asyncio, resource, sys, tempfile
from bitdust.identity.server import ServerLimits, start_identity_server
from bitdust.identity.store import IdentityStore

NOFILE = 256
resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
if sys.argv[1] == "capped":
    limits = ServerLimits.within_descriptors(NOFILE)
else:  # no caps, as the issue found it
    limits = ServerLimits(
        http_connections=10**6, http_connections_per_address=10**6, http_request_deadline=3630
    )

async def answer(reader, writer):
    writer.write(b"api ok\\n")
    await writer.drain()
    writer.close()

async def main():
    store = IdentityStore(tempfile.mkdtemp(), "host-a.com", 8084)
    server = await start_identity_server(store, "127.0.1.1", 0, 0, limits=limits)
    api = await asyncio.start_server(answer, "127.0.1.1", 0)  # stands for the REST API
    print(server.web_port, api.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(20)

asyncio.run(main())
"""


async def descriptors_settled(pid: int, timeout: float = 10.0) -> None:
    """Wait until the server has accepted what it will: its descriptor count holds still for
    half a second (accepting can lag the clients' connects on a busy machine)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(os.listdir(fd_dir))
        if count != last:
            last, still_since = count, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            return
        await asyncio.sleep(0.05)


async def api_reachable_while_slow_clients_hold_http(mode: str) -> bool:
    """A server process with 256 descriptors; 400 slow HTTP clients from 25 addresses; then
    the process's other listener (the REST API's stand-in) must still answer."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DESCRIPTOR_SERVER,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        web_port, api_port = map(
            int, (await asyncio.wait_for(process.stdout.readline(), 20)).split()
        )
        held = []
        # 50 connects at a time with a generous timeout: on a busy machine 400 at once with a
        # short one gave up early, left the server descriptors to spare and the control passed
        connecting = asyncio.Semaphore(50)

        async def slow_client(address: str) -> None:
            async with connecting:
                with contextlib.suppress(OSError, TimeoutError):
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(SERVER, web_port, local_addr=(address, 0)), 5
                    )
                    writer.write(b"GET /alice.xml HTTP/1.1\r\n")  # and never more
                    held.append(writer)

        await asyncio.gather(*(slow_client(f"127.0.1.{10 + i % 25}") for i in range(400)))
        await descriptors_settled(process.pid)
        try:
            reader, writer = await asyncio.open_connection(SERVER, api_port)
            answered = await asyncio.wait_for(reader.readline(), 2) == b"api ok\n"
            writer.close()
        except (OSError, TimeoutError):
            answered = False
        for writer in held:
            writer.close()
        return answered
    finally:
        process.kill()
        await process.wait()


async def test_slow_http_clients_leave_descriptors_for_the_rest_api():
    assert await api_reachable_while_slow_clients_hold_http("capped")
    print("\nwith 256 descriptors and 400 slow HTTP clients: the API answers (capped)")


async def test_without_caps_slow_http_clients_starve_the_rest_api():
    """The issue's finding, reproduced: the figure the test above improves on."""
    assert not await api_reachable_while_slow_clients_hold_http("uncapped")
