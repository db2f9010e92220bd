"""Fixtures of the identity tests: fixed keys from vectors/, builders of signed identities."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import load_private_key, public_key_to_openssh
from bitdust.identity.propagate import KnownServer
from bitdust.identity.server import start_identity_server
from bitdust.identity.signing import sign
from bitdust.identity.store import IdentityStore
from tests.ports import free_port

VECTORS = Path(__file__).parent / "vectors"
LOCAL_REFERENCE = VECTORS / "bitdust"
TODAY = datetime.date(2026, 11, 25)
HOSTS = {"host-a.com": "127.0.1.1", "host-b.com": "127.0.1.2", "host-c.com": "127.0.1.3"}


def reference_file(name: str) -> bytes:
    """A real identity file made by the original BitDust (vectors/bitdust, copied verbatim)."""
    return (LOCAL_REFERENCE / name).read_bytes()


@pytest.fixture(scope="session")
def key():
    return load_private_key(VECTORS / "test_key.pem")


@pytest.fixture(scope="session")
def other_key():
    return load_private_key(VECTORS / "other_key.pem")


def make_identity(
    key,
    *,
    name: str = "alice",
    sources: tuple[str, ...] | None = None,
    contacts: tuple[str, ...] = ("tcp://127.0.1.1:7771",),
    revision: int = 1,
    version: str = "bitdust-py 0.1.0",
    scheme: str = "rsa-pss-sha256-v1",
) -> Identity:
    """A signed identity of ``name`` (default source http://host-a.com/<name>.xml)."""
    unsigned = Identity(
        sources=sources or (f"http://host-a.com/{name}.xml",),
        contacts=contacts,
        date=format_date(TODAY),
        version=version,
        revision=revision,
        publickey=public_key_to_openssh(key),
    )
    return sign(unsigned, key, scheme)


def resolve(host: str) -> str:
    """The tests' host map: host-a.com -> 127.0.1.1, ..."""
    return HOSTS[host]


def snapshot(directory: Path) -> dict[str, tuple[bytes, float]]:
    """Every file below ``directory`` with its bytes and mtime."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@contextlib.asynccontextmanager
async def loop_ticks() -> AsyncIterator[list[int]]:
    """Counts 10 ms ticks of the event loop while the block runs (``ticks[0]``): a block that
    blocks the loop for 0.5 s sees none."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticker = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


@pytest.fixture
async def two_servers(tmp_path):
    """host-a.com and host-b.com, each serving HTTP directly on a free port (IDURL port)."""
    handles, servers = [], []
    for host in ("host-a.com", "host-b.com"):
        address = HOSTS[host]
        web_port = free_port(host=address)
        store = IdentityStore(tmp_path / host, host, web_port)
        handle = await start_identity_server(store, address, web_port, 0)
        handles.append(handle)
        servers.append(KnownServer(host, web_port, handle.tcp_port))
    yield servers, handles
    for handle in handles:
        await handle.close()
