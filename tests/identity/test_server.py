"""The identity server on real sockets: TCP intake, HTTP with ETag/304, index, expiry."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import pytest

from bitdust.identity import server as server_module
from bitdust.identity.client import fetch_identity, send_identity
from bitdust.identity.errors import (
    IdentityNotFound,
    IdentityRefused,
    IdentityServerError,
    Refusal,
)
from bitdust.identity.server import ServerLimits, start_identity_server
from bitdust.identity.store import IdentityStore
from tests.identity.conftest import HOSTS, loop_ticks, make_identity, resolve
from tests.ports import free_port

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def server(tmp_path, clock):
    """host-a.com's identity server, served directly (no nginx): IDURL port = web port."""
    address = HOSTS["host-a.com"]
    web_port = free_port(host=address)
    store = IdentityStore(tmp_path / "ids", "host-a.com", web_port, expiry_seconds=100)
    handle = await start_identity_server(
        store,
        address,
        web_port,
        0,
        clock=clock,
        expire_interval=0.05,
        limits=ServerLimits(intake_deadline=0.5),
    )
    yield handle
    await handle.close()


def _alice(key, server, **kwargs):
    return make_identity(key, sources=(f"http://host-a.com:{server.web_port}/alice.xml",), **kwargs)


async def test_submit_over_tcp_then_fetch_over_http(server, key):
    identity = _alice(key, server)
    idurl = await send_identity("127.0.1.1", server.tcp_port, identity.to_xml(), timeout=5)
    assert idurl == identity.idurl
    assert await fetch_identity(idurl, resolve) == identity.to_xml()


async def test_refusal_over_tcp_carries_the_reason(server, key, other_key):
    await send_identity("127.0.1.1", server.tcp_port, _alice(key, server).to_xml())
    with pytest.raises(IdentityRefused, match="key takeover refused"):
        await send_identity(
            "127.0.1.1", server.tcp_port, _alice(other_key, server, revision=7).to_xml()
        )
    foreign = make_identity(key, sources=("http://host-b.com/alice.xml",))
    with pytest.raises(IdentityRefused, match="none of the identity's sources"):
        await send_identity("127.0.1.1", server.tcp_port, foreign.to_xml())


async def test_the_server_counts_what_it_served_accepted_and_refused_by_rule(
    server, key, other_key
):
    identity = _alice(key, server)
    await send_identity("127.0.1.1", server.tcp_port, identity.to_xml())
    await send_identity("127.0.1.1", server.tcp_port, identity.to_xml())
    with pytest.raises(IdentityRefused) as refused:
        await send_identity(
            "127.0.1.1", server.tcp_port, _alice(other_key, server, revision=7).to_xml()
        )
    assert refused.value.kind is Refusal.BY_REMOTE_SERVER  # the client only sees the text
    foreign = make_identity(key, sources=("http://host-b.com/alice.xml",))
    with pytest.raises(IdentityRefused):
        await send_identity("127.0.1.1", server.tcp_port, foreign.to_xml())
    for _ in range(3):
        await fetch_identity(identity.idurl, resolve)
    with pytest.raises(IdentityNotFound):
        await fetch_identity(identity.idurl.replace("alice", "bob"), resolve)
    store = server.store
    assert store.served == 3
    assert store.accepted == {"stored": 1, "touched": 1}
    assert store.refused == {Refusal.KEY_TAKEOVER: 1, Refusal.NOT_A_SOURCE: 1}


async def _raw(server, payload: bytes, close_write: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.1.1", server.tcp_port)
    writer.write(payload)
    await writer.drain()
    if close_write:
        writer.write_eof()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return reply


async def test_framing_errors_get_one_error_line(server):
    assert await _raw(server, b"GET / HTTP/1.0\r\n\r\n") == (
        b"ERROR expected a header line 'IDENTITY <length>'\n"
    )
    assert await _raw(server, b"IDENTITY 999999\n") == (
        b"ERROR identity is 999999 bytes; this server accepts at most 65536\n"
    )
    assert await _raw(server, b"IDENTITY 5\nab") == (
        b"ERROR connection closed before the whole identity arrived\n"
    )


async def test_silent_client_times_out(server):
    reply = await _raw(server, b"IDENTITY 5\n", close_write=False)
    assert reply == b"ERROR timed out waiting for the identity\n"


async def test_http_serves_xml_with_etag_and_304(server, key):
    identity = _alice(key, server)
    await send_identity("127.0.1.1", server.tcp_port, identity.to_xml())
    url = f"http://127.0.1.1:{server.web_port}/alice.xml"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/xml"
            assert await response.read() == identity.to_xml()
            etag = response.headers["ETag"]
            last_modified = response.headers["Last-Modified"]
        assert email.utils.parsedate_to_datetime(last_modified).timestamp() == NOW
        async with session.get(url, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert await response.read() == b""
            assert response.headers["ETag"] == etag
        async with session.get(url, headers={"If-Modified-Since": last_modified}) as response:
            assert response.status == 304
        async with session.get(url, headers={"If-None-Match": '"other"'}) as response:
            assert response.status == 200
        async with session.head(url) as response:
            assert response.status == 200
        async with session.post(url, data=b"x") as response:
            assert response.status == 405
            assert response.headers["Allow"] == "GET, HEAD"
        async with session.get(f"http://127.0.1.1:{server.web_port}/bob.xml") as response:
            assert response.status == 404
        site = f"http://127.0.1.1:{server.web_port}"
        for path in ("/../etc/passwd", "/alice", "/x/alice.xml", "/alice.xml/", "/.xml", "/A.xml"):
            async with session.get(site + path) as response:
                assert response.status == 404, path
        async with session.get(f"{site}/%61lice.xml?x=1") as response:  # as any client may send
            assert response.status == 200 and await response.read() == identity.to_xml()


async def test_index_page_lists_identities_and_is_built_only_when_names_change(
    server, key, other_key, monkeypatch
):
    built = []
    real = server_module._index_page
    monkeypatch.setattr(server_module, "_index_page", lambda *a: built.append(1) or real(*a))

    async def index() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.1.1:{server.web_port}/") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            return await response.text()

    await send_identity("127.0.1.1", server.tcp_port, _alice(key, server).to_xml())
    assert '<a href="/alice.xml">alice</a>' in await index()
    await index()
    await send_identity("127.0.1.1", server.tcp_port, _alice(key, server).to_xml())  # a touch
    await index()
    assert len(built) == 1  # the same names: the page is not built again
    bob = make_identity(other_key, sources=(f"http://host-a.com:{server.web_port}/bob.xml",))
    await send_identity("127.0.1.1", server.tcp_port, bob.to_xml())
    page = await index()
    assert "<title>Identities on host-a.com</title>" in page
    assert '<a href="/alice.xml">alice</a>' in page and '<a href="/bob.xml">bob</a>' in page
    assert len(built) == 2


async def test_untouched_identity_expires(server, key, clock):
    identity = _alice(key, server)
    await send_identity("127.0.1.1", server.tcp_port, identity.to_xml())
    clock.now = NOW + 99
    await asyncio.sleep(0.2)
    assert await fetch_identity(identity.idurl, resolve) == identity.to_xml()
    clock.now = NOW + 101
    for _ in range(50):
        if not server.store.names():
            break
        await asyncio.sleep(0.05)
    with pytest.raises(IdentityNotFound, match=r"no such identity on its server \(HTTP 404\)"):
        await fetch_identity(identity.idurl, resolve)


async def test_clients_report_unreachable_servers(key):
    port = free_port(host="127.0.1.3")
    with pytest.raises(IdentityServerError, match="cannot reach identity server"):
        await send_identity("127.0.1.3", port, b"<identity/>", timeout=2)
    with pytest.raises(IdentityServerError, match="cannot reach"):
        await fetch_identity(f"http://host-c.com:{port}/alice.xml", resolve, timeout=2)


async def test_close_releases_ports(tmp_path):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80)
    handle = await start_identity_server(store, "127.0.1.1", 0, 0)
    web_port, tcp_port = handle.web_port, handle.tcp_port
    await handle.close()
    await handle.close()
    again = await start_identity_server(store, "127.0.1.1", web_port, tcp_port)
    await again.close()


async def test_the_store_works_off_the_event_loop(server, key, monkeypatch):
    """Signature checks and fsyncs run in the store's worker thread: the loop keeps ticking."""
    submit = server.store.submit

    def slow_submit(*args):
        time.sleep(0.5)  # a slow disk
        return submit(*args)

    monkeypatch.setattr(server.store, "submit", slow_submit)
    async with loop_ticks() as ticks:
        idurl = await send_identity("127.0.1.1", server.tcp_port, _alice(key, server).to_xml())
    assert idurl.endswith("/alice.xml")
    assert ticks[0] >= 20  # 0 when the submission blocks the loop for its 0.5 s
