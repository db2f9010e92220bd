"""identity-propagate as a service on loopback: it sends the identity to its sources only, and a
listener owner's new contacts become a new revision on those servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity.document import parse_identity
from bitdust.identity.local import load_local_identity, save_local_identity
from bitdust.identity.propagate import KnownServer, build_identity
from bitdust.identity.propagate_service import IdentityPropagateService
from bitdust.node.node import Node
from tests.identity.conftest import HOSTS, TODAY

pytestmark = pytest.mark.timeout(30)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def servers(two_servers):
    """Identity servers on host-a.com and host-b.com, and on host-c.com a bare listener that
    counts the connections it gets (a server the identity does not name as a source)."""
    known, handles = two_servers
    connections = []

    async def count(reader, writer):
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    bystander = await asyncio.start_server(count, HOSTS["host-c.com"], 0)
    port = bystander.sockets[0].getsockname()[1]
    yield [*known, KnownServer("host-c.com", 80, port)], handles, connections
    bystander.close()


def propagate_service(tmp_path: Path, known: list[KnownServer]) -> IdentityPropagateService:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    flags = {
        "services/identity-propagate/known-servers": ",".join(str(s) for s in known),
        "services/network/host-map": ",".join(f"{h}={a}" for h, a in HOSTS.items()),
    }
    node = Node(load_config(Paths.for_instance("default", env), env={}, flags=flags))
    node.ready = True  # the services that own listeners have started
    return IdentityPropagateService(node)


async def test_republishes_to_the_identitys_sources_only(tmp_path, servers, key):
    known, handles, connections = servers
    service = propagate_service(tmp_path, known)
    # alice's sources are host-a.com and host-b.com; host-c.com is known but not a source
    identity = build_identity("alice", known[:2], [], key, today=TODAY)
    save_local_identity(service.directory, key, identity)
    await service.start()
    try:
        await wait_until(lambda: len(service.last_results) == 2)
        assert [r["server"] for r in service.last_results] == [str(s) for s in known[:2]]
        assert all(r["ok"] for r in service.last_results)
        assert [h.store.get("alice") for h in handles] == [identity.to_xml()] * 2
        await asyncio.sleep(0.1)
        assert connections == []  # host-c.com was never contacted
    finally:
        await service.stop()


async def test_new_contacts_from_the_listener_owner_are_signed_and_republished(
    tmp_path, servers, key
):
    known, handles, _ = servers
    service = propagate_service(tmp_path, known)
    save_local_identity(service.directory, key, build_identity("bob", known[:2], [], key))
    await service.start()
    try:
        await wait_until(lambda: handles[0].store.get("bob") is not None)
        service.set_contacts("p2p", ["tcp://127.0.1.1:7779"])

        def published() -> list:
            return [parse_identity(h.store.get("bob")) for h in handles]

        await wait_until(lambda: all(i.revision == 2 for i in published()))
        assert [i.contacts for i in published()] == [("tcp://127.0.1.1:7779",)] * 2
        saved = load_local_identity(service.directory).identity
        assert saved.revision == 2 and saved.contacts == ("tcp://127.0.1.1:7779",)

        service.set_contacts("p2p", [])  # the listener closed: the contact is withdrawn
        await wait_until(lambda: all(i.revision == 3 for i in published()))
        assert [i.contacts for i in published()] == [()] * 2
    finally:
        await service.stop()


async def test_a_stored_contact_nobody_declares_is_withdrawn_at_start(tmp_path, servers, key):
    known, handles, _ = servers
    service = propagate_service(tmp_path, known)
    stale = build_identity("carol", known[:2], ["tcp://127.0.1.1:7771"], key, today=TODAY)
    save_local_identity(service.directory, key, stale)
    await service.start()
    try:
        await wait_until(lambda: handles[0].store.get("carol") is not None)
        stored = parse_identity(handles[0].store.get("carol"))
        assert (stored.revision, stored.contacts) == (2, ())
    finally:
        await service.stop()


async def test_a_created_identity_follows_its_contacts(tmp_path, servers):
    known, handles, _ = servers
    service = propagate_service(tmp_path, known[:2])
    await service.start()
    try:
        created = await service.create("dave", 1024)
        assert created["revision"] == 1 and created["contacts"] == []
        service.set_contacts("p2p", ["tcp://127.0.1.1:7779"])

        def revisions() -> list[int]:
            return [parse_identity(h.store.get("dave")).revision for h in handles]

        await wait_until(lambda: revisions() == [2, 2])
        assert parse_identity(handles[1].store.get("dave")).contacts == ("tcp://127.0.1.1:7779",)
    finally:
        await service.stop()
