"""The entangled-dht service inside real nodes (loopback UDP): the one method each DHT route
calls signs with the node's identity when it has one, owned keys are written and read by owner,
and owners are shown only when verified."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust import rsakeys
from bitdust.dht.owners import Found, OwnerKeys, OwnerUnknown
from bitdust.dht.refusals import RecordRefused, Refusal
from bitdust.dht.schemes import RSA_PSS
from bitdust.dht.service import DHTService
from bitdust.node.catalog import ServiceSpec
from bitdust.node.node import Node
from bitdust.node.service import Service, ServiceError
from tests.node.fakes import base_config

ALICE = "http://host-a.com:8084/alice.xml"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class AliceIdentity(Service):
    """Stands in for identity-propagate: what the DHT service reads is ``current``."""

    async def start(self) -> None:
        self.current = SimpleNamespace(private_key=KEY, identity=SimpleNamespace(idurl=ALICE))


DHT = ServiceSpec("entangled-dht", implementation="bitdust.dht.service:DHTService")
IDENTITY = ServiceSpec("identity-propagate", implementation=f"{__name__}:AliceIdentity")


async def start(base: Path, known: str, with_identity: bool) -> Node:
    settings = {
        "services/entangled-dht/known-nodes": known,
        "services/entangled-dht/udp-port": "0",
        "services/network/listen-host": "127.0.0.1",
        "services/identity-propagate/enabled": "true" if with_identity else "false",
    }
    node = Node(base_config(base, **settings), catalog=(DHT, IDENTITY))
    await node.start()
    return node


def dht(node: Node) -> DHTService:
    service = node.service("entangled-dht")
    assert isinstance(service, DHTService)
    return service


async def alices_key(idurl: str) -> bytes:
    if idurl != ALICE:
        raise OwnerUnknown(f"{idurl}: not found")
    return rsakeys.public_key_der(KEY)


async def nobody(idurl: str) -> bytes:
    raise OwnerUnknown(f"{idurl}: unreachable")


@pytest.mark.timeout(30)
async def test_values_are_signed_by_the_identity_and_owners_shown_only_when_verified(
    tmp_path: Path,
) -> None:
    alice = await start(tmp_path / "a", "genesis", with_identity=True)
    port = dht(alice).dht.address[1]
    reader = await start(tmp_path / "b", f"127.0.0.1:{port}", with_identity=False)
    try:
        # Identities come from these instead of identity servers (no network in tests).
        dht(reader).owners = OwnerKeys(alices_key)
        dht(alice).owners = OwnerKeys(nobody)
        while not dht(reader).dht.joined:
            await asyncio.sleep(0.02)
        assert await dht(alice).set_value("alice:status", b"online", 600) == 1
        [found] = await dht(reader).get_value("alice:status")
        assert (found.owner, found.record.scheme) == (ALICE, RSA_PSS)

        # The reader's own records name no owner; a record naming alice but signed by another
        # key is shown without one.
        assert await dht(reader).set_value("alice:status", b"forged", 600) == 1
        shown = {f.record.value: f.owner for f in await dht(alice).get_value("alice:status")}
        assert shown[b"online"] is None  # alice's node cannot fetch any identity: unverified
        shown = {f.record.value: f.owner for f in await dht(reader).get_value("alice:status")}
        assert shown == {b"online": ALICE, b"forged": None}

        # An owned key: only alice writes it, readers ask by her IDURL.
        assert await dht(alice).set_value("suppliers", b"bob,carol", 600, owned=True) == 1
        owned = await dht(reader).get_value("suppliers", owner=ALICE)
        assert [(f.record.value, f.owner) for f in owned] == [(b"bob,carol", ALICE)]
        assert isinstance(owned[0], Found) and owned[0].record.name == b"suppliers"
        assert await dht(reader).get_value("suppliers") == []  # not the shared key
        with pytest.raises(ServiceError, match="cannot fetch this identity"):
            await dht(reader).get_value("suppliers", owner="http://host-x.com/x.xml")
        with pytest.raises(RecordRefused) as refused:
            await dht(alice).set_value("n" * 65, b"v", 600, owned=True)
        assert refused.value.refusal is Refusal.BAD_KEY
    finally:
        await reader.stop()
        await alice.stop()
