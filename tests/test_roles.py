"""Roles by setting (issue 16 item 8): ``node/role`` (or ``run --role``) picks the preset, so a
second supplier runs as ``bitdust@supplier2``; `check-config` says which role runs and why."""

from __future__ import annotations

import json
from pathlib import Path

from bitdust.config import Paths, load_config
from tests.helpers import cli, node_env, running_node, write_conf


def test_node_role_picks_the_preset_of_any_instance(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    write_conf(tmp_path, "supplier2", {"node/role": "supplier"})
    config = load_config(Paths.for_instance("supplier2", env), env=env)
    assert config.role == "supplier"
    assert config["services/supplier/enabled"] is True
    assert config.layer("services/supplier/enabled") == "role supplier"
    assert config.role_reason == f"node/role = supplier in {tmp_path / 'etc/supplier2.conf'}"


def test_the_environment_and_the_command_line_may_set_the_role(tmp_path: Path) -> None:
    env = node_env(tmp_path, BITDUST_NODE_ROLE="dht-seed")
    paths = Paths.for_instance("seed2", env)
    assert load_config(paths, env=env).role == "dht-seed"
    config = load_config(paths, env=env, flags={"node/role": "proxy-router"})
    assert (config.role, config.role_reason) == (
        "proxy-router",
        "node/role = proxy-router in command line",
    )


def test_check_config_says_which_role_and_why(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    unnamed = cli(env, "--instance", "supplier2", "check-config", check=True)
    assert unnamed.stdout.splitlines()[:2] == [
        "configuration of instance 'supplier2' is valid",
        "role: default (the instance's name 'supplier2' is not a role's and node/role is not set)",
    ]
    cli(env, "--instance", "supplier2", "set", "node/role", "supplier", check=True)
    cli(
        env,
        "--instance",
        "supplier2",
        "set",
        "services/entangled-dht/udp-port",
        "14454",
        check=True,
    )
    lines = cli(env, "--instance", "supplier2", "check-config", check=True).stdout.splitlines()
    assert lines[1] == f"role: supplier (node/role = supplier in {tmp_path / 'etc/supplier2.conf'})"
    assert "supplier" in lines[2].split(": ")[1].split(", ")
    named = cli(env, "--json", "--instance", "dht-seed", "check-config", check=True)
    assert json.loads(named.stdout)["role"] == "dht-seed"
    assert json.loads(named.stdout)["role_reason"] == "the instance's name"
    flagged = cli(
        env, "--json", "--instance", "x", "check-config", "--role", "dht-seed", check=True
    )
    assert json.loads(flagged.stdout)["services"] == ["entangled-dht"]


def test_two_suppliers_run_side_by_side(tmp_path: Path) -> None:
    with (
        running_node(tmp_path, instance="supplier") as first,
        running_node(tmp_path, instance="supplier2", settings={"node/role": "supplier"}) as second,
    ):
        for node in (first, second):
            info = node.ok("GET", "/process/info/v1")
            assert info["role"] == "supplier", info
            states = {row["name"]: row for row in node.ok("GET", "/service/list/v1")}
            assert states["customer"]["state"] == "OFF"
            assert states["identity-server"]["state"] == "OFF"
        assert second.ok("GET", "/config/get/services/supplier/enabled/v1")["layer"] == (
            "role supplier"
        )
