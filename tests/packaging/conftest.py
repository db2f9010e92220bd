"""Fixtures of the packaging tests: the built artefacts and the tools that inspect them.

These tests prove the product as shipped: the frozen binary `dist/bitdust` and the package
`dist/bitdust_<version>_amd64.deb`, both built by `make binary deb`, and the signed APT
repository `dist/apt` of that package (`make repo`); `make test` and `make test-deb` build them
first. They never build anything themselves except the rebuilt package of
the upgrade test; when an artefact is missing they fail and say which make target makes it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
BINARY = DIST / "bitdust"
MAKE_HINT = "run 'make binary deb repo' first (pytest alone does not build them)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "packaging: tests of the frozen binary and the Debian package (make binary deb first)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory is a packaging test, whether or not it says so."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.packaging)


def debian_version() -> str:
    """The package version from debian/changelog (0.1.0-1)."""
    result = subprocess.run(
        ["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"), "-S", "Version"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def binary() -> Path:
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY} is missing: {MAKE_HINT}")
    return BINARY


@pytest.fixture(scope="session")
def deb() -> Path:
    path = DIST / f"bitdust_{debian_version()}_amd64.deb"
    if not path.is_file():
        pytest.fail(f"{path} is missing: {MAKE_HINT}")
    return path


@pytest.fixture(scope="session")
def apt_repo(deb: Path) -> Path:
    """dist/apt as `make repo` built it, holding the package under test."""
    path = DIST / "apt"
    if not (path / "dists" / "stable" / "InRelease").is_file():
        pytest.fail(f"{path} is missing: run 'make repo'")
    published = path / "pool" / "main" / "b" / "bitdust" / deb.name
    if not published.is_file() or published.read_bytes() != deb.read_bytes():
        pytest.fail(f"{path} does not carry {deb.name} as built: run 'make repo'")
    return path


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run 'make deps' (as root)")
    return path


def bare_env(**extra: str) -> dict[str, str]:
    """An environment without the virtualenv or any Python: what a Debian host has."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


@dataclass
class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    path: Path
    sock: socket.socket = field(init=False)
    messages: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)

    def wait_for(
        self, field_: str, timeout: float, process: subprocess.Popen | None = None
    ) -> float:
        """Seconds (monotonic clock) when a message with the line ``field_`` arrived."""
        for stamp, message in self.messages:
            if field_ in message.splitlines():
                return stamp
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if process is not None and process.poll() is not None:
                    break
                continue
            stamp = time.monotonic()
            message = data.decode("utf-8", "replace")
            self.messages.append((stamp, message))
            if field_ in message.splitlines():
                return stamp
        seen = [message for _, message in self.messages]
        raise AssertionError(f"no {field_} within {timeout} s; received {seen}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    notify = NotifySocket(tmp_path / "notify.sock")
    yield notify
    notify.close()
