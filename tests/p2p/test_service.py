"""The p2p service inside a real Node (identity-propagate and p2p only), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import resource
import socket
from pathlib import Path

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity.local import LocalIdentity, load_local_identity, save_local_identity
from bitdust.node.catalog import SPECS
from bitdust.node.node import Node, ServiceStartFailed
from bitdust.node.service import ServiceError
from bitdust.p2p.service import P2PService, published_host
from bitdust.p2p.transport import EndpointLimits
from tests.identity.conftest import make_identity
from tests.p2p.peers import identity_key
from tests.ports import free_port

CATALOG = (SPECS["identity-propagate"], SPECS["p2p"])


def node_for(tmp_path: Path, **flags: str) -> Node:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    flags = {"services/network/listen-host": "127.0.0.1",
             "services/tcp-connections/tcp-port": "0", **flags}  # fmt: skip
    return Node(load_config(Paths.for_instance("default", env), env={}, flags=flags), CATALOG)


async def test_without_an_identity_it_listens_publishes_and_says_what_to_do(tmp_path: Path):
    node = node_for(tmp_path)
    await node.start()
    try:
        p2p = node.service("p2p")
        assert isinstance(p2p, P2PService)
        port = p2p.info()["tcp_port"]
        assert node.service("identity-propagate").contacts() == [f"tcp://127.0.0.1:{port}"]
        assert p2p.status_text() == f"p2p on TCP {port}, 0 sessions, waiting for an identity"
        with pytest.raises(ServiceError, match="bitdust identity create NAME"):
            await p2p.request("http://host-b.com/bob.xml", "echo", b"x")
        # a peer that connects meanwhile is turned away at once
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await node.stop()
    assert node.slots["identity-propagate"].service is None


async def test_a_port_in_use_fails_the_start_with_the_setting_to_change(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = node_for(tmp_path, **{"services/tcp-connections/tcp-port": str(port)})
        with pytest.raises(
            ServiceStartFailed, match="bitdust set services/tcp-connections/tcp-port"
        ):
            await node.start()


async def test_the_handshake_identity_follows_the_identity_revision(tmp_path: Path):
    node = node_for(tmp_path)
    await node.start()
    try:
        p2p = node.service("p2p")
        assert isinstance(p2p, P2PService)
        propagate = node.service("identity-propagate")
        key = identity_key("alice")
        propagate.current = LocalIdentity(key, make_identity(key, revision=4))
        first = p2p.local_peer()
        propagate.current = LocalIdentity(key, make_identity(key, revision=5))
        second = p2p.local_peer()
        assert (first.revision, second.revision) == (4, 5)
        assert first.signature == second.signature  # signed once per key
        assert first.idurl == "http://host-a.com/alice.xml"
    finally:
        await node.stop()


async def test_the_published_host_is_never_loopback_unless_listen_host_is():
    assert await published_host("127.0.1.1") == "127.0.1.1"
    found = await published_host("")
    assert found is None or not found.startswith("127.")


async def test_a_restart_keeps_the_published_contact_and_revision(tmp_path: Path):
    """Stopping is a shutdown or a restart: withdrawing the contact would sign a revision
    without it (peers could not even try) and another one with it at the next start."""
    port = free_port()
    key = identity_key("alice")
    contact = f"tcp://127.0.0.1:{port}"
    identity_dir = tmp_path / "s" / "default" / "identity"
    save_local_identity(identity_dir, key, make_identity(key, revision=7, contacts=(contact,)))
    for _ in range(2):
        node = node_for(tmp_path, **{"services/tcp-connections/tcp-port": str(port)})
        await node.start()
        await asyncio.sleep(0.3)  # the publisher runs once the node is ready
        await node.stop()
        kept = load_local_identity(identity_dir).identity
        assert (kept.revision, kept.contacts) == (7, (contact,))


def test_session_caps_fit_the_descriptor_limit():
    assert EndpointLimits.within_descriptors(65536) == EndpointLimits()
    small = EndpointLimits.within_descriptors(256)
    assert (small.max_sessions, small.sessions_per_address) == (85, 16)
    assert EndpointLimits.within_descriptors(30).sessions_per_address == 10


async def test_the_running_service_shows_its_caps(tmp_path: Path):
    node = node_for(tmp_path)
    await node.start()
    try:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        info = node.service("p2p").info()
        assert info["max_sessions"] == min(1000, nofile // 3)
    finally:
        await node.stop()
