"""nodes-lookup inside real nodes: DHT on loopback UDP, p2p on loopback TCP, identities fetched
over HTTP from an in-test identity server, each node on its own 127.0.N.1 (its own /24, as on a
real network, so the DHT's per-/24 share of a shared key does not decide the outcome).

Routers alice, bob and erin are live; dave advertised and then stopped; carol is live but never
advertised, and mallory forges an index entry and a shared-key advert in carol's name and writes
a malformed advert of her own. frank looks them up."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.dht.records import dht_key
from bitdust.dht.schemes import RsaSigner
from bitdust.dht.service import DHTService
from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import public_key_to_openssh
from bitdust.identity.local import LocalIdentity
from bitdust.identity.signing import sign
from bitdust.lookup.adverts import (
    ADVERT_AGE,
    Advert,
    Defect,
    NotPublished,
    Role,
    advert_name,
    advertise,
    bucket_of,
    encode_advert,
    index_name,
    withdraw,
)
from bitdust.lookup.service import NodesLookupService, Skip
from bitdust.node.catalog import SPECS, ServiceSpec
from bitdust.node.node import Node
from bitdust.node.service import Service
from tests.node.fakes import base_config

IDENTITY_HOST = "127.0.0.1"
NAMES = ("alice", "bob", "erin", "dave", "carol", "mallory", "frank")


@functools.cache
def key_of(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


class IdentityServer:
    """Signed identity documents served over real HTTP, as identity servers serve them."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.port = 0

    async def start(self) -> web.AppRunner:
        async def serve(request: web.Request) -> web.Response:
            document = self.documents.get(request.match_info["name"])
            if document is None:
                raise web.HTTPNotFound()
            return web.Response(body=document, content_type="text/xml")

        app = web.Application()
        app.router.add_get("/{name}.xml", serve)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, IDENTITY_HOST, 0)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    def idurl(self, name: str) -> str:
        return f"http://ids.test:{self.port}/{name}.xml"


SERVER = IdentityServer()  # the one the stand-in identity services publish to


class StandInIdentity(Service):
    """Stands in for identity-propagate: a key and a document, re-signed with the contacts p2p
    declares and served by the test's identity server. The node's base directory names the user."""

    async def start(self) -> None:
        self.name = self.node.paths.state_dir.parents[1].name  # <tmp>/<name>/state/<instance>
        self.revision = 0
        self.declared: tuple[str, ...] = ()
        self._publish()

    def set_contacts(self, owner: str, contacts: list[str]) -> None:
        self.declared = tuple(contacts)
        self._publish()

    def _publish(self) -> None:
        self.revision += 1
        self.current = LocalIdentity(
            key_of(self.name), self.publish_document(self.name, self.revision, self.declared)
        )

    @staticmethod
    def publish_document(name: str, revision: int = 1, contacts: tuple[str, ...] = ()) -> Identity:
        """``name``'s signed identity, put on the test's identity server."""
        unsigned = Identity(
            sources=(SERVER.idurl(name),),
            contacts=contacts,
            date=format_date(datetime.date.today()),
            revision=revision,
            publickey=public_key_to_openssh(key_of(name)),
        )
        identity = sign(unsigned, key_of(name))
        SERVER.documents[name] = identity.to_xml()
        return identity


CATALOG = (
    SPECS["entangled-dht"],
    ServiceSpec("identity-propagate", implementation=f"{__name__}:StandInIdentity"),
    SPECS["p2p"],
    SPECS["nodes-lookup"],
)


@dataclass
class Net:
    nodes: dict[str, Node]

    def dht(self, name: str) -> DHTService:
        service = self.nodes[name].service("entangled-dht")
        assert isinstance(service, DHTService)
        return service

    def lookup(self, name: str) -> NodesLookupService:
        service = self.nodes[name].service("nodes-lookup")
        assert isinstance(service, NodesLookupService)
        return service


async def start_node(base: Path, n: int, known: str) -> Node:
    """A node on its own 127.0.<20+n>.1 (its own /24), known to the DHT through ``known``."""
    config = base_config(
        base,
        **{
            "services/network/listen-host": f"127.0.{20 + n}.1",
            "services/network/host-map": f"ids.test={IDENTITY_HOST}",
            "services/entangled-dht/udp-port": "0",
            "services/entangled-dht/rpc-timeout": "0.5 s",  # dave stops: don't wait 5 s
            "services/entangled-dht/known-nodes": known,
            "services/tcp-connections/tcp-port": "0",
            "services/identity-propagate/enabled": "true",
            "services/p2p/enabled": "true",
            "services/nodes-lookup/enabled": "true",
        },
    )
    node = Node(config, catalog=CATALOG)
    await node.start()
    return node


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    runner = await SERVER.start()
    nodes: dict[str, Node] = {}
    try:
        known = "genesis"
        for n, name in enumerate(NAMES):
            nodes[name] = await start_node(tmp_path / name, n, known)
            if known == "genesis":
                port = nodes[name].service("entangled-dht").info()["udp_port"]
                known = f"127.0.20.1:{port}"
        net = Net(nodes)
        for name in NAMES:  # every node knows the others before anything is stored
            await net.dht(name).dht.bootstrap([net.dht(NAMES[0]).dht.address])
        yield net
    finally:
        for node in reversed(nodes.values()):
            await node.stop()
        await runner.cleanup()


async def forge(net: Net) -> None:
    """mallory's attempts: carol's name on records signed by another key, and a broken advert."""
    mallory = net.dht("mallory")
    carol = SERVER.idurl("carol")
    signer = RsaSigner(key_of("forger"))  # not mallory's: her own entry may share the bucket
    entry = dht_key(index_name(Role.ROUTER, bucket_of(carol)))
    await mallory.dht.set_value(entry, b"", owner=carol, signer=signer)
    shared = dht_key(advert_name(Role.ROUTER))  # the advert's name, but a shared key
    advert = encode_advert(Advert(Role.ROUTER, {"contact": "tcp://127.0.24.1:1"}, 1))
    await mallory.dht.set_value(shared, advert, owner=carol, signer=signer)
    # mallory's own entry is genuine, but what her owned key holds is not an advert
    await mallory.set_value(index_name(Role.ROUTER, bucket_of(SERVER.idurl("mallory"))), b"")
    await mallory.set_value(advert_name(Role.ROUTER), b"\xc1not msgpack", owned=True)


@pytest.mark.timeout(60)
async def test_find_returns_live_verified_routers_at_random(net: Net) -> None:
    for name in ("alice", "bob", "erin", "dave"):
        contact = f"tcp://{name}.example:7771"
        await advertise(net.dht(name), Role.ROUTER, {"contact": contact})
    await forge(net)
    await net.nodes["dave"].stop()
    live = {SERVER.idurl(name) for name in ("alice", "bob", "erin")}
    lookup = net.lookup("frank")

    found = await lookup.find(Role.ROUTER, 10)
    assert {c.idurl for c in found} == live
    assert {c.idurl: c.advert.info["contact"] for c in found} == {
        SERVER.idurl(name): f"tcp://{name}.example:7771" for name in ("alice", "bob", "erin")
    }
    assert lookup.skipped[Skip.UNPROVEN_ENTRY] == 1  # mallory's entry naming carol
    assert lookup.refused == {Defect.NOT_MSGPACK: 1}  # mallory's own broken advert
    assert lookup.skipped[Skip.UNREACHABLE] == 1  # dave
    assert lookup.info()["counters"]["skipped"]["unreachable"] == 1

    orders = {tuple(c.idurl for c in await lookup.find(Role.ROUTER, 3)) for _ in range(12)}
    assert len(orders) > 1, "the same order every time"
    assert all(set(order) == live for order in orders)

    two = await lookup.find(Role.ROUTER, 2, exclude={SERVER.idurl("alice")})
    assert len(two) == 2 and {c.idurl for c in two} == live - {SERVER.idurl("alice")}
    assert await lookup.find(Role.SUPPLIER, 5) == []


@pytest.mark.timeout(60)
async def test_a_withdrawn_advert_is_not_returned_and_the_finder_skips_itself(net: Net) -> None:
    for name in ("alice", "bob"):
        await advertise(net.dht(name), Role.ROUTER, {"contact": f"tcp://{name}.example:7771"})
    await asyncio.sleep(1.05)  # a record's time is in whole seconds: the next one must be newer
    await withdraw(net.dht("bob"), Role.ROUTER)
    [notice] = await net.dht("frank").get_value(advert_name(Role.ROUTER), SERVER.idurl("bob"))
    # as long-lived as the advert it replaces: no older copy held somewhere can reappear
    assert notice.record.expires - notice.record.created == ADVERT_AGE
    found = await net.lookup("alice").find(Role.ROUTER, 5)
    assert found == []  # bob withdrew, alice is the finder
    found = await net.lookup("frank").find(Role.ROUTER, 5)
    assert [c.idurl for c in found] == [SERVER.idurl("alice")]
    assert net.lookup("frank").skipped[Skip.WITHDRAWN] == 1


@pytest.mark.timeout(30)
async def test_an_advert_no_node_took_says_so(tmp_path: Path) -> None:
    runner = await SERVER.start()
    alone = await start_node(tmp_path / "alice", 0, "genesis")
    try:
        dht = alone.service("entangled-dht")
        assert isinstance(dht, DHTService)
        with pytest.raises(NotPublished, match="no DHT node took this node's proxy-router advert"):
            await advertise(dht, Role.ROUTER, {"contact": "tcp://alice.example:7771"})
    finally:
        await alone.stop()
        await runner.cleanup()


def spread_names(writer: str, per_writer: int) -> list[str]:
    """``per_writer`` user names whose index entries put at most 2 in any bucket: the share of
    a shared key that one /24 gets."""
    names: list[str] = []
    taken: Counter[int] = Counter()
    for i in range(1000):
        name = f"{writer}-user{i}"
        bucket = bucket_of(SERVER.idurl(name))
        if taken[bucket] < 2:
            taken[bucket] += 1
            names.append(name)
            if len(names) == per_writer:
                return names
    raise AssertionError("unreachable: 8 buckets hold 16 names")


@pytest.mark.timeout(60)
async def test_the_index_shows_more_candidates_than_one_shared_key_holds(net: Net) -> None:
    users: list[str] = []
    for writer in ("alice", "bob", "erin"):  # three /24s, 8 entries each
        for name in spread_names(writer, 8):
            StandInIdentity.publish_document(name)
            idurl = SERVER.idurl(name)
            entry = dht_key(index_name(Role.ROUTER, bucket_of(idurl)))
            await net.dht(writer).dht.set_value(
                entry, b"", owner=idurl, signer=RsaSigner(key_of(name))
            )
            users.append(idurl)
    shown = await net.lookup("frank").indexed(Role.ROUTER)
    assert sorted(shown) == sorted(users)  # 24: more than the 16 records of one shared key
