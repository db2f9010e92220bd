"""The identity-propagate service's choices that need no network: the contacts it publishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity.keys import load_private_key
from bitdust.identity.local import LocalIdentity
from bitdust.identity.propagate_service import IdentityPropagateService
from bitdust.node.node import Node
from bitdust.node.service import ServiceError, ServiceState
from tests.identity.conftest import VECTORS, make_identity


def service_for(tmp_path: Path, **flags: str) -> IdentityPropagateService:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    config = load_config(Paths.for_instance("default", env), env={}, flags=flags)
    return IdentityPropagateService(Node(config))


def test_nothing_is_published_where_nothing_listens(tmp_path: Path) -> None:
    # p2p is enabled in the default role but not provided by this version: no listener, no
    # contact, whatever its port setting says
    service = service_for(tmp_path, **{"services/network/listen-host": "127.0.1.3",
                                       "services/tcp-connections/tcp-port": "7779"})  # fmt: skip
    assert service.config.enabled("p2p")
    assert service.contacts() == []


def test_the_listener_owner_sets_and_withdraws_the_contacts(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    service.set_contacts("p2p", ["tcp://127.0.1.3:7779"])
    service.set_contacts("proxy-transport", ["tcp://127.0.1.4:7771"])
    assert service.contacts() == ["tcp://127.0.1.3:7779", "tcp://127.0.1.4:7771"]
    service.set_contacts("p2p", [])
    assert service.contacts() == ["tcp://127.0.1.4:7771"]


async def test_network_status_shows_the_identity_without_any_section(tmp_path: Path) -> None:
    key = load_private_key(VECTORS / "test_key.pem")
    service = service_for(tmp_path)
    service.current = LocalIdentity(key, make_identity(key))
    slot = service.node.slots["identity-propagate"]
    slot.state, slot.service = ServiceState.ON, service
    status = await service.node.network_status([])
    assert status["idurl"] == "http://host-a.com/alice.xml"
    assert status["global_id"] == "alice@host-a.com"
    assert status["identity_contacts"] == ["tcp://127.0.1.1:7771"]


def test_contacts_a_document_cannot_hold_are_refused_when_declared(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    service.set_contacts("p2p", ["tcp://127.0.1.3:7779"])
    with pytest.raises(
        ServiceError, match=r"p2p cannot publish these contacts: <contact> .* is not"
    ):
        service.set_contacts("p2p", ["tcp://127.0.1.3:7779 with spaces"])
    assert service.contacts() == ["tcp://127.0.1.3:7779"]  # unchanged
