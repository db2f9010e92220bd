"""Crafted values and broken files against the config layer and the CLI's `set` (issue 10,
items 14-17): each is refused on one clear line; the conffile is left byte-for-byte as it was."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from pathlib import Path

import pytest

from bitdust.cli import MAX_PASSPHRASE_BYTES
from bitdust.config import OPTIONS, BadValue, ConfigError, Paths, edit_conffile, load_config
from bitdust.dht.service import settings_from_config
from bitdust.errors import ExitStatus
from bitdust.keysize import ALLOWED_KEY_BITS, allowed_key_sizes_text
from tests.helpers import REPO, cli, node_env

ROUTERS = "services/proxy-transport/preferred-routers"
AUTH = "interface/api/auth-secret-enabled"
# Every character str.splitlines() breaks a line at.
LINE_BREAKS = [chr(c) for c in range(0x3000) if len(f"a{chr(c)}b".splitlines()) == 2]
CONFFILE = "# settings\nlogs/level = info\n"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s")}
    paths = Paths.for_instance("default", env)
    paths.config_dir.mkdir()
    paths.conffile.write_text(CONFFILE)
    return paths


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: every bitdust dir under ``tmp_path``, the config dir made."""
    return node_env(tmp_path)


@pytest.fixture
def conffile(tmp_path: Path, env: dict[str, str]) -> Path:
    """The default instance's conffile, holding CONFFILE."""
    path = tmp_path / "etc" / "default.conf"
    path.write_text(CONFFILE)
    return path


def test_the_line_breaks_are_the_ones_python_knows() -> None:
    assert {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"} == set(
        LINE_BREAKS
    )


@pytest.mark.parametrize("char", [*LINE_BREAKS, "\t", "\x00", "\x7f", "\x9b", "\ud800"])
def test_a_value_holding_a_line_break_or_control_character_is_refused(
    paths: Paths, char: str
) -> None:
    with pytest.raises(BadValue, match=f"contains U\\+{ord(char):04X} .*; one line expected"):
        edit_conffile(paths.conffile, ROUTERS, f"a{char}{AUTH} = false")
    assert paths.conffile.read_text() == CONFFILE
    assert load_config(paths, env={})[AUTH] is True


def test_a_conffile_is_split_on_newlines_only(paths: Paths) -> None:
    """A U+2028 already in a file is part of its line's value, never a line of its own."""
    paths.conffile.write_text(f"{ROUTERS} = a\u2028{AUTH} = false\n")
    with pytest.raises(ConfigError, match=f"{paths.conffile}:1: {ROUTERS}: .*U\\+2028") as error:
        load_config(paths, env={})
    assert ":2:" not in str(error.value)


def test_cli_set_refuses_an_injected_line(env: dict[str, str], conffile: Path) -> None:
    result = cli(env, "set", ROUTERS, f"a\u2028{AUTH} = false")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: {ROUTERS}: 'a\\u2028{AUTH} = false' is not valid: contains U+2028 (line "
        "separator); one line expected (expected text on one line)\n"
    )
    assert conffile.read_text() == CONFFILE
    assert cli(env, "get", AUTH, check=True).stdout == "true\n"


# -- item 15: what `set` writes reads back ---------------------------------------------------------


def test_set_90d_reads_back_for_get_and_check_config(env: dict[str, str], tmp_path: Path) -> None:
    key = "services/identity-server/expire-after"
    written = cli(env, "set", key, "90d", check=True).stdout
    assert written.startswith(f"{key} = 90 d    (written to ")
    assert f"{key} = 90 d\n" in (tmp_path / "etc" / "default.conf").read_text()
    assert cli(env, "get", key, check=True).stdout == "90 d\n"
    checked = cli(env, "check-config", check=True).stdout
    assert checked.startswith("configuration of instance 'default' is valid\n")


# -- item 16: bounds live in the registry ----------------------------------------------------------

RPC = "services/entangled-dht/rpc-timeout"


def test_set_refuses_what_the_dht_would_refuse(env: dict[str, str], conffile: Path) -> None:
    result = cli(env, "set", RPC, "0")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: {RPC}: '0' is not valid: out of range (expected a duration like '30', '10 s', "
        "'5 min', '12 h' or '30 d' from 0.1 s to 5 min)\n"
    )
    assert conffile.read_text() == CONFFILE


def test_check_config_refuses_an_out_of_range_line(env: dict[str, str], conffile: Path) -> None:
    conffile.write_text(f"{RPC} = 0\n")
    result = cli(env, "check-config")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: {conffile}:1: {RPC}: '0' is not valid: out of range (expected a duration like "
        "'30', '10 s', '5 min', '12 h' or '30 d' from 0.1 s to 5 min)\n"
    )


def test_a_default_age_above_max_age_is_refused_by_set_and_check_config(
    env: dict[str, str], conffile: Path
) -> None:
    result = cli(env, "set", "services/entangled-dht/default-age", "2 d")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: {conffile} not changed: with it, services/entangled-dht/default-age = 2 d "
        f"({conffile}) is above services/entangled-dht/max-age = 1 d (default); lower the first "
        "or raise the second\n"
    )
    assert conffile.read_text() == CONFFILE
    conffile.write_text("services/identity-propagate/min-servers = 4\n")
    (conffile.parent / "network.json").write_text("{}")
    result = cli(env, "--instance", "default", "check-config", "-o",
                 "services/identity-propagate/max-servers=3")  # fmt: skip
    assert result.returncode == 2
    assert "min-servers = 4" in result.stderr and "max-servers = 3 (command line)" in result.stderr


def test_bounds_of_the_dht_options_are_what_the_dht_accepts() -> None:
    """Every combination of each DHT option's lowest and highest value starts a DHTSettings:
    the registry is the one place that refuses, and it refuses no less than the DHT."""
    keys = [key for key in OPTIONS if key.startswith("services/entangled-dht/")
            and OPTIONS[key].low is not None]  # fmt: skip
    assert len(keys) == 6
    for corner in itertools.product(*[(OPTIONS[k].low, OPTIONS[k].high) for k in keys]):
        config = dict(zip(keys, corner, strict=True))
        if config["services/entangled-dht/default-age"] > config["services/entangled-dht/max-age"]:
            continue
        settings_from_config(config)


# -- item 17: files that cannot be used ------------------------------------------------------------


def test_a_conffile_that_is_a_directory_is_one_line_and_status_2(
    env: dict[str, str], conffile: Path
) -> None:
    conffile.unlink()
    conffile.mkdir()
    for command in (("get", "logs/level"), ("check-config",), ("set", "logs/level", "debug")):
        result = cli(env, *command)
        assert result.returncode == 2, command
        assert f"bitdust: {conffile} is a directory, not a file\n" in result.stderr, command
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert conffile.is_dir() and not any(conffile.iterdir())


def test_a_conffile_that_is_a_fifo_is_refused_without_waiting(
    env: dict[str, str], conffile: Path
) -> None:
    conffile.unlink()
    os.mkfifo(conffile)
    result = cli(env, "get", "logs/level", timeout=20)
    assert (result.returncode, result.stderr) == (2, f"bitdust: {conffile} is not a regular file\n")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (("dht", "set", "a"), "usage: bitdust dht find [NODE_ID] | get KEY | set KEY VALUE"),
        (("api", "GET", "network/status", "dht"), "'dht': expected NAME=VALUE"),
        (("identity", "create"), "usage: bitdust identity create NAME [KEY_SIZE]"),
        (("identity", "restore", "/dev/zero"), "/dev/zero is too large (over 65536 bytes)"),
        (("identity-server", "nginx-config"), "set services/identity-server/host"),
    ],
)
def test_bad_arguments_exit_2_as_the_man_page_says(
    env: dict[str, str], words: tuple[str, ...], message: str
) -> None:
    result = cli(env, *words, timeout=20)
    assert result.returncode == 2
    assert result.stderr.startswith(f"bitdust: {message}")
    assert len(result.stderr.splitlines()) == 1


def test_a_passphrase_file_without_end_is_refused_after_a_bounded_read(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = cli(env, "identity", "backup", str(tmp_path / "key.bak"),
                 "--passphrase-file", "/dev/zero", timeout=20)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: passphrase file /dev/zero is too large (over {MAX_PASSPHRASE_BYTES} bytes)\n"
    )
    assert not (tmp_path / "key.bak").exists()


def test_set_names_a_missing_config_directory(tmp_path: Path) -> None:
    env = node_env(tmp_path, BITDUST_CONFIG_DIR=str(tmp_path / "no-such-dir"))
    result = cli(env, "set", "logs/level", "debug")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: cannot write {tmp_path}/no-such-dir/default.conf: the directory "
        f"{tmp_path}/no-such-dir does not exist (create it, or point BITDUST_CONFIG_DIR at the "
        "configuration directory)\n"
    )
    assert "sudo" not in result.stderr
    assert not (tmp_path / "no-such-dir").exists()


def test_the_man_page_lists_every_exit_status() -> None:
    spec = importlib.util.spec_from_file_location("manpage", REPO / "packaging" / "manpage.py")
    assert spec is not None and spec.loader is not None
    manpage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manpage)
    assert [int(code) for code, _ in manpage.EXIT_STATUS] == sorted(ExitStatus)


# -- issue 9 item 7: key sizes are rsakeys' --------------------------------------------------------


def test_identity_create_takes_the_key_sizes_of_rsakeys(env: dict[str, str]) -> None:
    refused = cli(env, "identity", "create", "alice", "3000")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"bitdust: key size 3000 is not supported (expected {allowed_key_sizes_text()})\n"
    )
    for size in ALLOWED_KEY_BITS:  # accepted: what stops them is the node that is not running
        for words in (("alice", str(size)), ("alice", "--key-size", str(size))):
            result = cli(env, "identity", "create", *words)
            assert result.returncode == 1 and "is not running" in result.stderr, (words, result)


def test_a_refusal_names_the_bad_part_and_quotes_a_long_value_briefly(paths: Paths) -> None:
    option = OPTIONS["services/network/host-map"]
    long_name = "b" * 300
    with pytest.raises(BadValue) as error:
        option.parse(f"a=1.2.3.4,{long_name}=1.1.1.1")
    message = str(error.value)
    assert f"'{long_name}' is not a host name or address" in message
    assert "is not an IP address" not in message
    assert message.startswith(f"services/network/host-map: 'a=1.2.3.4,{'b' * 70}…' is not valid: ")


@pytest.mark.parametrize(
    "entry",
    [
        {"host": "host-a.com:14441,evil.example", "udp_port": 14441},
        {"host": "host-a.com", "udp_port": "14441,evil.example:1"},
        {"host": ["host-a.com"], "udp_port": 14441},
        {"host": "host-a.com", "udp_port": True},
    ],
)
def test_a_network_json_entry_is_one_node(paths: Paths, entry: dict) -> None:
    paths.network_json.write_text(json.dumps({"service_entangled_dht": {"known_nodes": [entry]}}))
    with pytest.raises(ConfigError, match="is not a single value"):
        load_config(paths, env={})
