"""One answer per setting (issue 16 item 4): what `bitdust set` writes is the value in force, or
the command refuses and names the layer that overrides it; `bitdust unset` hands a key back to
the layer below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitdust.config import Overridden, Paths, check_in_force, load_config, plan_unset
from tests.helpers import cli, node_env, running_node, write_conf

SEED = {"services/entangled-dht/known-nodes": "genesis"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return node_env(tmp_path)


def api_settings(tmp_path: Path, instance: str = "default") -> Path:
    path = tmp_path / "state" / instance / "api-settings.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_plan_unset_removes_the_line_and_keeps_comments(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text("# logs/level = info\nlogs/level = debug\nservices/supplier/enabled = true\n")
    edit = plan_unset(conf, "logs/level")
    assert edit is not None
    assert edit.text == "# logs/level = info\nservices/supplier/enabled = true\n"
    assert plan_unset(conf, "services/customer/enabled") is None


def test_check_in_force_names_the_overriding_layer(env: dict[str, str], tmp_path: Path) -> None:
    paths = Paths.for_instance("default", env)
    api_settings(tmp_path).write_text("logs/level = debug\n")
    config = load_config(paths, env=env)
    with pytest.raises(Overridden) as error:
        check_in_force(config, "logs/level", paths.conffile)
    assert str(error.value) == (
        f"logs/level not changed: {paths.api_settings} sets it ('debug'), and it overrides "
        f"{paths.conffile}; clear it there with 'bitdust unset logs/level'"
    )


def test_set_under_api_settings_is_refused_then_unset_clears_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    conf = write_conf(tmp_path, "default", {"logs/level": "info"})
    settings = api_settings(tmp_path)
    settings.write_text("# written by the API\nlogs/level = debug\n")
    before = conf.read_bytes()
    refused = cli(env, "set", "logs/level", "warning")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"bitdust: logs/level not changed: {settings} sets it ('debug'), and it overrides "
        f"{conf}; clear it there with 'bitdust unset logs/level'\n"
    )
    assert conf.read_bytes() == before
    assert cli(env, "get", "logs/level").stdout == "debug\n"

    unset = cli(env, "unset", "logs/level", check=True)
    assert unset.stdout == f"logs/level = info    (removed from {settings}; now from {conf})\n"
    assert settings.read_text() == "# written by the API\n"
    cli(env, "set", "logs/level", "warning", check=True)
    assert cli(env, "get", "logs/level").stdout == "warning\n"

    unset = cli(env, "unset", "logs/level", check=True)
    assert unset.stdout == f"logs/level = info    (removed from {conf}; now from default)\n"
    assert "logs/level" not in conf.read_text()
    again = cli(env, "unset", "logs/level", check=True)
    assert again.stdout == "logs/level = info    (not set here: from default)\n"


def test_set_under_an_environment_variable_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "supplier", {})
    before = conf.read_bytes()
    refused = cli({**env, "BITDUST_LOGS_LEVEL": "error"}, "--instance", "supplier", "set",
                  "logs/level", "warning")  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        f"bitdust: logs/level not changed: environment sets it ('error'), and it overrides "
        f"{conf}; remove BITDUST_LOGS_LEVEL from the environment (for the systemd unit: "
        "'systemctl edit bitdust@supplier')\n"
    )
    assert conf.read_bytes() == before


def test_a_running_node_answers_what_was_set(tmp_path: Path) -> None:
    """The bug: the API's layer overrode the conffile, yet `set` said 'applied'."""
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        node.ok("POST", "/config/set/logs/level/v1", {"value": "debug"})
        words = ("--instance", "dht-seed")
        refused = cli(node.env, *words, "set", "logs/level", "warning")
        assert refused.returncode == 2, refused
        assert refused.stderr.endswith("'bitdust --instance dht-seed unset logs/level'\n")
        assert "applied" not in refused.stdout
        assert node.ok("GET", "/config/get/logs/level/v1")["value"] == "debug"

        unset = cli(node.env, *words, "unset", "logs/level", check=True)
        assert unset.stdout.splitlines()[-1] == "bitdust: applied to the running node"
        row = node.ok("GET", "/config/get/logs/level/v1")
        assert (row["value"], row["layer"]) == ("info", "default")

        result = cli(node.env, *words, "set", "logs/level", "warning", check=True)
        assert result.stdout.splitlines()[-1] == "bitdust: applied to the running node"
        row = node.ok("GET", "/config/get/logs/level/v1")
        assert (row["value"], row["layer"]) == ("warning", str(tmp_path / "etc/dht-seed.conf"))
        assert cli(node.env, *words, "get", "logs/level").stdout == "warning\n"
        result = cli(node.env, *words, "--json", "set", "logs/level", "error", check=True)
        assert json.loads(result.stdout) == {
            "key": "logs/level",
            "value": "error",
            "layer": str(tmp_path / "etc/dht-seed.conf"),
            "written_to": str(tmp_path / "etc/dht-seed.conf"),
            "node": "applied",
        }
        result = cli(node.env, *words, "unset", "--json", "services/entangled-dht/bucket-size")
        assert json.loads(result.stdout) == {
            "key": "services/entangled-dht/bucket-size", "value": "8", "layer": "default",
        }  # fmt: skip


def test_the_node_command_line_overrides_are_refused_by_set_and_the_api(tmp_path: Path) -> None:
    with running_node(
        tmp_path, instance="dht-seed", settings=SEED, options={"logs/level": "debug"}
    ) as node:
        conf = tmp_path / "etc" / "dht-seed.conf"
        before = conf.read_bytes()
        refused = cli(node.env, "--instance", "dht-seed", "set", "logs/level", "warning")
        assert refused.returncode == 2
        assert refused.stderr == (
            "bitdust: logs/level not changed: the running node takes it from its command line "
            "('debug'); restart the node without '-o logs/level=...'\n"
        )
        assert conf.read_bytes() == before
        status, envelope = node.api("POST", "/config/set/logs/level/v1", {"value": "error"})
        assert status == 409
        assert envelope["errors"] == [
            f"logs/level not changed: command line sets it ('debug'), and it overrides "
            f"{tmp_path / 'state/dht-seed/api-settings.conf'}; restart the node without "
            "'-o logs/level=...'"
        ]
        assert not (tmp_path / "state" / "dht-seed" / "api-settings.conf").exists()


def test_api_config_unset_hands_the_key_back(tmp_path: Path) -> None:
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        node.ok("POST", "/config/set/logs/level/v1", {"value": "error"})
        row = node.ok("POST", "/config/unset/logs/level/v1")
        assert (row["value"], row["layer"], row["removed"]) == ("info", "default", True)
        assert node.ok("POST", "/v1/config/unset/logs/level")["removed"] is False
