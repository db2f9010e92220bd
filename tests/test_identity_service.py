"""The identity-propagate service's choices that need no network: the contacts it publishes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from bitdust.config import Paths, load_config
from bitdust.identity.service import IdentityPropagateService
from bitdust.node.node import Node


def service_for(tmp_path: Path, **flags: str) -> IdentityPropagateService:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    config = load_config(Paths.for_instance("default", env), env={}, flags=flags)
    return IdentityPropagateService(Node(config))


def test_contacts_never_publish_loopback_without_a_loopback_listen_host(tmp_path: Path) -> None:
    for contact in service_for(tmp_path).contacts():
        host = contact.removeprefix("tcp://").rsplit(":", 1)[0]
        assert not ipaddress.ip_address(host).is_loopback, contact


def test_contacts_use_the_listen_host_and_the_p2p_port(tmp_path: Path) -> None:
    service = service_for(tmp_path, **{"services/network/listen-host": "127.0.1.3",
                                       "services/tcp-connections/tcp-port": "7779"})  # fmt: skip
    assert service.contacts() == ["tcp://127.0.1.3:7779"]


def test_no_contacts_without_p2p(tmp_path: Path) -> None:
    service = service_for(tmp_path, **{"services/network/listen-host": "127.0.1.3",
                                       "services/p2p/enabled": "false"})  # fmt: skip
    assert service.contacts() == []
