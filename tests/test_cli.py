"""CLI habits (issue 16 item 9): help for every command and argument, exit status 2 for every
usage error, text for people and --json for scripts, key sizes from rsakeys, start advice that
fits how the instance is managed, shell completion from the parser, `dht get` of a missing key
failing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bitdust.cli import as_text, build_parser, main, start_command
from bitdust.config import OPTIONS, Paths
from bitdust.errors import ExitStatus
from bitdust.keysize import ALLOWED_KEY_BITS
from tests.helpers import REPO, cli, node_env, running_node

SEED = {"services/entangled-dht/known-nodes": "genesis"}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def commands() -> list[str]:
    return sorted(subparsers(build_parser()))


def test_every_command_and_argument_has_help() -> None:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {choice.dest.split()[0]: choice.help for choice in action._choices_actions}
    assert set(listed) == {sub.prog.split()[1] for sub in action.choices.values()}
    assert all(listed.values()), listed
    for name, sub in [("bitdust", parser), *subparsers(parser).items()]:
        for argument in sub._actions:
            if isinstance(argument, argparse._SubParsersAction):
                continue
            assert argument.help and argument.help != argparse.SUPPRESS, (name, argument.dest)


def test_key_size_offers_only_what_the_node_accepts() -> None:
    identity = subparsers(build_parser())["identity"]
    key_size = next(a for a in identity._actions if a.dest == "key_size")
    assert tuple(key_size.choices) == tuple(ALLOWED_KEY_BITS)


@pytest.mark.parametrize("command", commands())
def test_a_usage_error_of_any_command_exits_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--no-such-option"])
    assert exit_.value.code == ExitStatus.CONFIG == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: bitdust ") and ": error: " in err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: bitdust")


@pytest.mark.parametrize(
    ("raised", "status", "err"),
    [
        (
            RuntimeError("boom"),
            ExitStatus.INTERNAL,
            "bitdust: internal error: RuntimeError: boom\n",
        ),
        (KeyboardInterrupt(), ExitStatus.INTERRUPTED, ""),
    ],
)
def test_a_bug_is_70_and_ctrl_c_is_130_as_the_man_page_says(
    raised: BaseException,
    status: ExitStatus,
    err: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(*_: object) -> int:
        raise raised

    monkeypatch.setattr("bitdust.cli.cmd_version", fail)
    assert main(["version"]) == status
    assert capsys.readouterr().err == err


def test_start_advice_follows_how_the_instance_is_managed(tmp_path: Path) -> None:
    units = tmp_path / "systemd"
    wants = units / "bitdust.service.wants"
    wants.mkdir(parents=True)
    (wants / "bitdust@supplier.service").symlink_to("/lib/systemd/system/bitdust@.service")
    env = {"BITDUST_CONFIG_DIR": str(tmp_path)}
    supplier, seed = Paths.for_instance("supplier", env), Paths.for_instance("dht-seed", env)
    assert start_command(supplier, units) == "sudo systemctl start bitdust@supplier"
    assert start_command(seed, units) == "bitdust --instance dht-seed daemon"


def test_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    result = cli(node_env(tmp_path), "--instance", "dht-seed", "states")
    assert result.returncode == 1
    assert result.stderr.startswith("bitdust: the node (instance dht-seed) is not running (")
    assert result.stderr.endswith("start it with 'bitdust --instance dht-seed daemon'\n")


def test_as_text_reads_as_lines() -> None:
    data = {"ready": True, "dht": {"layers": [{"contacts": 0, "state": "ON"}]}, "x": None}
    assert as_text(data).splitlines() == [
        "ready: yes",
        "dht:",
        "  layers:",
        "    - contacts: 0",
        "      state: ON",
        "x: -",
    ]


def test_text_for_people_json_for_scripts_and_a_missing_key_fails(tmp_path: Path) -> None:
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        words = ("--instance", "dht-seed")
        text = cli(node.env, *words, "network", "status", "--dht", check=True).stdout
        assert "dht:\n" in text and "  contacts: 0\n" in text
        assert not text.startswith("{")
        for where in ((*words, "--json", "network", "status", "--dht"),
                      (*words, "network", "status", "--dht", "--json")):  # fmt: skip
            status = json.loads(cli(node.env, *where, check=True).stdout)
            assert status["dht"]["contacts"] == 0 and status["role"] == "dht-seed"
        states = cli(node.env, *words, "states", check=True).stdout.splitlines()
        assert any(line.endswith(": service_entangled_dht(ON)") for line in states), states
        rows = json.loads(cli(node.env, *words, "--json", "states", check=True).stdout)
        assert {"name": "service_entangled_dht", "state": "ON"}.items() <= next(
            row for row in rows if row["name"] == "service_entangled_dht"
        ).items()
        got = json.loads(cli(node.env, *words, "--json", "get", "logs/level", check=True).stdout)
        assert got == {"key": "logs/level", "value": "info", "layer": "default"}

        missing = cli(node.env, *words, "dht", "get", "nothing:here")
        assert missing.returncode == 1
        assert missing.stderr == "bitdust: no value under key 'nothing:here' in the DHT\n"
        assert missing.stdout == ""
        cli(node.env, *words, "dht", "set", "something:here", "v", check=True)
        found = cli(node.env, *words, "--json", "dht", "get", "something:here", check=True)
        assert [v["value"] for v in json.loads(found.stdout)["values"]] == ["v"]


def load_completion() -> Any:
    spec = importlib.util.spec_from_file_location("completion", REPO / "packaging/completion.py")
    assert spec is not None and spec.loader is not None
    completion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(completion)
    return completion


def test_bash_completion_names_every_command() -> None:
    script = load_completion().render("bash")
    assert script.rstrip().endswith("-F _bitdust bitdust")
    for command in commands():
        assert command in script, command
    assert all(str(bits) in script for bits in ALLOWED_KEY_BITS)


def test_bash_completes_settings_keys(tmp_path: Path) -> None:
    script = tmp_path / "bitdust.bash"
    script.write_text(load_completion().render("bash"))
    line = "bitdust set services/supp"
    words = f"COMP_WORDS=({line}); COMP_CWORD=2; COMP_LINE='{line}'"
    result = subprocess.run(
        ["bash", "-c", f"source {script}; {words}; COMP_POINT=${{#COMP_LINE}}; "
         '_shtab_bitdust; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert result.stdout.split() == sorted(k for k in OPTIONS if k.startswith("services/supp"))


CA_STORE_PROBE = """
import os, ssl
from bitdust.cli import without_ca_certificates
before = dict(os.environ)
with without_ca_certificates():
    import aiohttp.connector
assert dict(os.environ) == before, "the environment was not restored"
print(aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
      ssl.create_default_context().cert_store_stats()["x509_ca"])
"""


def test_a_node_imports_aiohttp_without_loading_the_ca_store() -> None:
    """`bitdust run` imports aiohttp with OpenSSL pointed at no CA certificates: its two
    import-time TLS contexts held 2-3 MiB of every node. The environment is left as it was, and a
    context made afterwards loads the system's store."""
    probe = subprocess.run(
        [sys.executable, "-c", CA_STORE_PROBE], capture_output=True, text=True, check=True
    )
    at_import, afterwards = map(int, probe.stdout.split())
    assert at_import == 0
    if afterwards == 0:
        pytest.skip("this system has no CA certificates (Debian's ca-certificates) to load")
