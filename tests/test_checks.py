"""Whole-configuration checks: conflicts, port clashes inside an instance, enabled instances."""

from __future__ import annotations

from pathlib import Path

from bitdust.config import Paths, load_config
from bitdust.node.catalog import Listener
from bitdust.node.checks import bindings, check_config, systemd_enabled_instances
from tests.node import fakes
from tests.node.fakes import enable, spec


def config_for(tmp_path: Path, instance: str, **flags: str):
    env = {
        "BITDUST_CONFIG_DIR": str(tmp_path / "etc"),
        "BITDUST_STATE_DIR": str(tmp_path / "s"),
        "BITDUST_RUNTIME_DIR": str(tmp_path / "r"),
    }
    return load_config(Paths.for_instance(instance, env), env={}, flags=flags)


def test_every_role_preset_is_valid_on_its_own(tmp_path: Path) -> None:
    for role in ("default", "dht-seed", "identity-server", "proxy-router", "supplier"):
        extra = {"services/identity-server/host": "host-a.com"}
        assert check_config(config_for(tmp_path, role, **extra)) == [], role


def test_two_listeners_on_one_port_are_named(tmp_path: Path) -> None:
    config = config_for(
        tmp_path, "identity-server", **{"services/identity-server/tcp-port": "8084"}
    )
    assert check_config(config) == [
        "services/identity-server/web-port and services/identity-server/tcp-port both use tcp "
        "port 8084"
    ]


def test_conflicting_services_name_both_keys(tmp_path: Path) -> None:
    config = config_for(tmp_path, "proxy-router", **{"services/proxy-transport/enabled": "true"})
    [problem] = check_config(config)
    assert problem.startswith(
        "services/proxy-server/enabled and services/proxy-transport/enabled are both true"
    )


def test_systemd_enabled_instances_are_found(tmp_path: Path) -> None:
    wants = tmp_path / "multi-user.target.wants"
    wants.mkdir()
    (wants / "bitdust@supplier.service").symlink_to("/lib/systemd/system/bitdust@.service")
    (wants / "ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    assert systemd_enabled_instances(tmp_path) == {"supplier"}


def test_listeners_come_from_the_specs_of_the_services_that_run(tmp_path: Path) -> None:
    config = config_for(tmp_path, "identity-server")
    assert {(b.listener.kind, b.listener.port_key, b.port) for b in bindings(config)} == {
        ("tcp", "interface/api/rest-http-port", 8182),
        ("udp", "services/entangled-dht/udp-port", 14442),
        ("tcp", "services/identity-server/web-port", 8084),
        ("tcp", "services/identity-server/tcp-port", 6661),
    }


def test_services_declaring_one_listener_share_its_socket(tmp_path: Path) -> None:
    shared = Listener("tcp", "services/tcp-connections/tcp-port")
    catalog = (
        spec("sessions", fakes.Base, listeners=(shared,)),
        spec("router", fakes.Middle, "sessions", listeners=(shared,)),
    )
    config = enable(config_for(tmp_path, "dht-seed"), "sessions", "router")
    keys = [binding.listener.port_key for binding in bindings(config, catalog)]
    assert keys == ["interface/api/rest-http-port", "services/tcp-connections/tcp-port"]
