"""Crafted values and broken files against the config layer and the CLI's `set` (issue 10,
items 14-17): each is refused on one clear line; the conffile is left byte-for-byte as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitdust.config import BadValue, ConfigError, Paths, edit_conffile, load_config
from tests.helpers import cli, node_env

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


def test_cli_set_refuses_an_injected_line(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    conffile = tmp_path / "etc" / "default.conf"
    conffile.write_text(CONFFILE)
    result = cli(env, "set", ROUTERS, f"a\u2028{AUTH} = false")
    assert result.returncode == 2
    assert result.stderr == (
        f"bitdust: {ROUTERS}: 'a\\u2028{AUTH} = false' is not valid: contains U+2028 (line "
        "separator); one line expected (expected text on one line)\n"
    )
    assert conffile.read_text() == CONFFILE
    assert cli(env, "get", AUTH, check=True).stdout == "true\n"
