"""Fixtures of the identity tests: fixed keys from vectors/, builders of signed identities."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import pytest

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import load_private_key, public_key_to_openssh
from bitdust.identity.signing import sign

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


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def snapshot(directory: Path) -> dict[str, tuple[bytes, float]]:
    """Every file below ``directory`` with its bytes and mtime."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
