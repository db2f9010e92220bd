"""proxy-server and proxy-transport inside a real Node on 127.0.0.1: states, network/status,
and the one TCP port p2p and the router share."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity.local import save_local_identity
from bitdust.lookup.adverts import Role
from bitdust.node.catalog import SPECS, ServiceSpec
from bitdust.node.node import Node
from bitdust.node.service import Service, StatusSection
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.preamble import MAGIC, Kind, Preamble
from bitdust.p2p.service import P2PService
from bitdust.p2p.session import Session
from bitdust.proxy.relay import route_id
from bitdust.proxy.transport_service import preferred_routers
from tests.identity.conftest import make_identity
from tests.p2p.peers import ALICE, identity_key
from tests.proxy.network import until

CATALOG = tuple(
    SPECS[name]
    for name in (
        "entangled-dht",
        "identity-propagate",
        "p2p",
        "nodes-lookup",
        "proxy-server",
        "proxy-transport",
    )
)


def router_node(tmp_path: Path) -> Node:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    flags = {
        "services/network/listen-host": "127.0.0.1",
        "services/tcp-connections/tcp-port": "0",
        "services/entangled-dht/udp-port": "0",
        "services/entangled-dht/known-nodes": "genesis",
        "services/nodes-lookup/enabled": "false",
        "services/proxy-transport/enabled": "false",
        "services/proxy-server/enabled": "true",
    }
    key = identity_key("router")
    identity = make_identity(key, name="router", contacts=("tcp://127.0.0.1:1",))
    save_local_identity(tmp_path / "s" / "default" / "identity", key, identity)
    return Node(load_config(Paths.for_instance("default", env), env={}, flags=flags), CATALOG)


async def closed_after(port: int, data: bytes) -> bytes:
    """What the port answers to ``data`` until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_router_shows_its_states_and_serves_relay_and_p2p_on_one_port(tmp_path: Path):
    node = router_node(tmp_path)
    await node.start()
    try:
        states = {row["name"]: row["state"] for row in node.states()}
        assert states["service_proxy_server"] == "ON"
        assert states["service_proxy_transport"] == "OFF"
        assert states["proxy_router"] == "LISTEN"
        status = (await node.network_status([StatusSection.PROXY]))["proxy"]
        assert status["role"] == "router" and status["routes"] == 0
        assert status["bytes_relayed"] == 0

        port = node.service("p2p").info()["tcp_port"]
        bad_kind = MAGIC + bytes((9, 4)) + b"abcd"
        assert await closed_after(port, bad_kind) == b""
        unknown_route = Preamble(Kind.CONNECT, "0123456789abcdef").encode()
        assert await closed_after(port, unknown_route) == b""
        guessed_token = Preamble(Kind.ACCEPT, "f" * 32).encode()
        assert await closed_after(port, guessed_token) == b""

        # a direct session on the same port still gets the router's handshake answer
        local = LocalPeer.from_identity_key(identity_key("alice"), ALICE, 1)
        session = Session(initiator=True, local=local, now=0.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(session.data_to_send())
        answer = await asyncio.wait_for(reader.read(2), 5)
        writer.close()
        assert len(answer) == 2 and int.from_bytes(answer, "big") > 32  # message 2 follows
    finally:
        await node.stop()
    assert node.states()[-1]["name"] != "proxy_router"  # gone with its service


def test_preferred_routers_are_idurls_in_the_settings_order():
    assert preferred_routers("") == []
    assert preferred_routers("http://host-c.com/r1.xml, http://host-d.com/r2.xml") == [
        "http://host-c.com/r1.xml",
        "http://host-d.com/r2.xml",
    ]


class NoRoutersFound(Service):
    """nodes-lookup in a network without routers in the DHT: the preferred one must do."""

    async def find(self, role: Role, count: int, exclude: Collection[str] = ()) -> list:
        return []


def node_of(tmp_path: Path, name: str, **settings: str) -> Node:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / name / "etc"),
           "BITDUST_STATE_DIR": str(tmp_path / name / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / name / "r")}  # fmt: skip
    flags = {
        "services/network/listen-host": "127.0.0.1",
        "services/tcp-connections/tcp-port": "0",
        "services/entangled-dht/udp-port": "0",
        "services/entangled-dht/known-nodes": "genesis",
        **settings,
    }
    key = identity_key(name)
    identity = make_identity(key, name=name, contacts=())
    save_local_identity(tmp_path / name / "s" / "default" / "identity", key, identity)
    catalog = tuple(
        ServiceSpec("nodes-lookup", needs=("entangled-dht", "p2p"), implementation=NO_LOOKUP)
        if spec.name == "nodes-lookup"
        else spec
        for spec in CATALOG
    )
    return Node(load_config(Paths.for_instance("default", env), env={}, flags=flags), catalog)


NO_LOOKUP = f"{__name__}:NoRoutersFound"


async def test_a_routed_node_publishes_its_routers_contact_instead_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    router = node_of(
        tmp_path,
        "router",
        **{
            "services/proxy-server/enabled": "true",
            "services/proxy-transport/enabled": "false",
            "services/nodes-lookup/enabled": "false",
        },
    )
    routed = node_of(
        tmp_path,
        "alice",
        **{"services/proxy-transport/enabled": "true",
           "services/proxy-transport/preferred-routers": "http://host-a.com/router.xml"},
    )  # fmt: skip
    nodes = {"http://host-a.com/router.xml": router, ALICE: routed}

    async def served(_: P2PService, idurl: str) -> bytes:  # as identity servers would serve
        return nodes[idurl].service("identity-propagate").current.identity.to_xml()

    monkeypatch.setattr(P2PService, "_fetch", served)
    await router.start()
    router_identity = router.service("identity-propagate")
    await until(lambda: router_identity.current.identity.contacts)  # the router has published
    await routed.start()
    try:
        # ready only once routed: the first revision it signs names the router alone
        router_contact = router.service("p2p").contact
        declared = routed.service("identity-propagate").contacts()
        assert declared == [f"{router_contact}/{route_id(ALICE)}"]  # p2p's own is withdrawn
        status = (await routed.network_status([StatusSection.PROXY]))["proxy"]
        assert (status["role"], status["state"]) == ("client", "ROUTED")
        assert status["router"] == "http://host-a.com/router.xml"
        states = {row["name"]: row["state"] for row in routed.states()}
        assert states["service_proxy_transport"] == "ON"
        [route] = (await router.network_status([StatusSection.PROXY]))["proxy"]["routed"]
        assert route["idurl"] == ALICE
    finally:
        await routed.stop()
        await router.stop()
