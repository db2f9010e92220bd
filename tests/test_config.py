"""Configuration: value parsers, the layers and their order, and conffile edits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.config import (
    OPTIONS,
    SIZE,
    BadValue,
    ConfigError,
    Paths,
    UnknownKey,
    edit_conffile,
    env_var,
    format_size,
    get_option,
    load_config,
)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    env = {
        "BITDUST_CONFIG_DIR": str(tmp_path / "etc"),
        "BITDUST_STATE_DIR": str(tmp_path / "state"),
        "BITDUST_RUNTIME_DIR": str(tmp_path / "run"),
    }
    paths = Paths.for_instance("supplier", env)
    paths.config_dir.mkdir(parents=True)
    paths.state_dir.mkdir(parents=True)
    return paths


# -- parsers -------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**30), st.sampled_from(["", "B", "KB", "MB", "GB"]))
def test_size_parses_what_it_formats(number: int, unit: str) -> None:
    value = SIZE.parse(f"{number} {unit}".strip())
    assert SIZE.parse(format_size(value)) == value


def test_size_reads_bitdust_forms() -> None:
    option = get_option("services/supplier/donated-space")
    assert option.parse("50 GB") == 50 * 1024**3
    assert option.parse("256MB") == 256 * 1024**2
    assert option.format(option.parse("8 GB")) == "8 GB"


@pytest.mark.parametrize("key", sorted(OPTIONS))
@given(text=st.text(max_size=60))
def test_every_parser_accepts_or_refuses_clearly(key: str, text: str) -> None:
    option = OPTIONS[key]
    try:
        value = option.parse(text)
    except BadValue as exc:
        assert key in str(exc) and "expected" in str(exc)
    else:
        assert option.parse(option.format(value)) == value


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(com|net)", fullmatch=True), st.integers(1, 65535)
        ),
        min_size=1,
        max_size=5,
    )
)
def test_host_lists_round_trip(entries: list[tuple[str, int]]) -> None:
    option = get_option("services/entangled-dht/known-nodes")
    text = ",".join(f"{host}:{port}" for host, port in entries)
    assert option.parse(text) == tuple(entries)
    assert option.format(option.parse(text)) == text


def test_known_nodes_genesis_and_known_servers_default_tcp_port() -> None:
    assert get_option("services/entangled-dht/known-nodes").parse("genesis") == "genesis"
    servers = get_option("services/identity-propagate/known-servers")
    assert servers.parse("host-a.com:80:6661,host-b.com:8080") == (
        ("host-a.com", 80, 6661),
        ("host-b.com", 8080, 6661),
    )


def test_known_servers_are_listed_once_and_bounded() -> None:
    servers = get_option("services/identity-propagate/known-servers")
    with pytest.raises(BadValue, match=r"host-a\.com:80 is listed twice"):
        servers.parse("host-a.com:80:6661,HOST-A.com:80:7000")
    assert len(servers.parse("host-a.com:80,host-a.com:8084")) == 2  # two servers, one host
    many = ",".join(f"host-{n}.com:80" for n in range(33))
    with pytest.raises(BadValue, match="33 servers listed"):
        servers.parse(many)
    assert len(servers.parse(many.rsplit(",", 1)[0])) == 32


def test_bad_values_name_the_expected_form() -> None:
    with pytest.raises(BadValue, match=r"'banana'.*expected a size like '50 GB'"):
        get_option("services/supplier/donated-space").parse("banana")
    with pytest.raises(BadValue, match="0-65535"):
        get_option("services/entangled-dht/udp-port").parse("70000")
    with pytest.raises(BadValue, match="true or false"):
        get_option("services/supplier/enabled").parse("maybe")


def test_unknown_key_suggests_the_nearest() -> None:
    with pytest.raises(UnknownKey, match="did you mean services/supplier/donated-space"):
        get_option("services/supplier/donated-spase")


def test_guide_keys_exist() -> None:
    for service in (
        "customer",
        "supplier",
        "proxy-transport",
        "proxy-server",
        "private-messages",
        "nodes-lookup",
        "entangled-dht",
        "identity-server",
        "identity-propagate",
    ):
        assert f"services/{service}/enabled" in OPTIONS
    for key in (
        "services/entangled-dht/udp-port",
        "services/entangled-dht/known-nodes",
        "services/identity-server/web-port",
        "services/identity-server/tcp-port",
        "services/identity-server/host",
        "services/identity-propagate/known-servers",
        "services/supplier/donated-space",
        "services/customer/suppliers-number",
        "services/customer/needed-space",
        "services/proxy-server/routes-limit",
        "services/tcp-connections/tcp-port",
        "interface/api/rest-http-port",
        "interface/api/auth-secret-enabled",
        "services/network/listen-host",
        "services/network/host-map",
    ):
        assert key in OPTIONS


# -- layers --------------------------------------------------------------------------------------


def test_layers_apply_in_order_and_are_reported(paths: Paths) -> None:
    key = "services/supplier/donated-space"
    config = load_config(paths, env={})
    assert config.layer("services/supplier/enabled") == "role supplier"
    assert config.layer(key) == "default"

    paths.network_json.write_text(
        json.dumps(
            {
                "name": "test",
                "service_entangled_dht": {
                    "bucket_size": 4,
                    "known_nodes": [{"host": "host-a.com", "udp_port": 14441}],
                },
                "service_identity_propagate": {
                    "known_servers": [{"host": "host-a.com", "http_port": 80, "tcp_port": 6661}]
                },
                "service_proxy_transport": {
                    "preferred_routers": [
                        {"idurl": "http://host-a.com/router-a.xml"},
                        {"idurl": "http://host-b.com/router-b.xml"},
                    ]
                },
            }
        )
    )
    config = load_config(paths, env={})
    assert config["services/proxy-transport/preferred-routers"] == (
        "http://host-a.com/router-a.xml,http://host-b.com/router-b.xml"
    )
    assert config["services/entangled-dht/known-nodes"] == (("host-a.com", 14441),)
    assert config["services/entangled-dht/bucket-size"] == 4
    assert config.layer("services/entangled-dht/bucket-size") == str(paths.network_json)
    assert config["services/identity-propagate/known-servers"] == (("host-a.com", 80, 6661),)

    paths.conffile.write_text(f"{key} = 10 GB\nservices/entangled-dht/bucket-size = 6\n")
    config = load_config(paths, env={})
    assert (config[key], config.layer(key)) == (10 * 1024**3, str(paths.conffile))
    assert config["services/entangled-dht/bucket-size"] == 6

    paths.api_settings.write_text(f"{key} = 20 GB\n")
    assert load_config(paths, env={})[key] == 20 * 1024**3

    env = {env_var(key): "30 GB"}
    config = load_config(paths, env=env)
    assert (config[key], config.layer(key)) == (30 * 1024**3, "environment")

    config = load_config(paths, env=env, flags={key: "40 GB"})
    assert (config[key], config.layer(key)) == (40 * 1024**3, "command line")


def test_every_bad_line_is_reported_with_file_and_line(paths: Paths) -> None:
    paths.conffile.write_text("# comment\nservices/supplier/enabled = maybe\nnot-a-key = 1\nnoeq\n")
    with pytest.raises(ConfigError) as error:
        load_config(paths, env={})
    message = str(error.value)
    assert f"{paths.conffile}:2: services/supplier/enabled: 'maybe'" in message
    assert f"{paths.conffile}:3: unknown setting 'not-a-key'" in message


def test_network_json_routers_are_one_idurl_each(paths: Paths) -> None:
    paths.network_json.write_text(
        json.dumps({"service_proxy_transport": {"preferred_routers": [{"idurl": "a,b"}]}})
    )
    with pytest.raises(ConfigError, match="'idurl' is not a single value"):
        load_config(paths, env={})
    paths.network_json.write_text(json.dumps({"service_proxy_transport": {"preferred_routers": 1}}))
    with pytest.raises(ConfigError, match="preferred_routers: expected a list"):
        load_config(paths, env={})


def test_bad_network_json_is_refused(paths: Paths) -> None:
    paths.network_json.write_text('{"service_entangled_dht": {"known_nodes": [{"host": "x"}]}}')
    with pytest.raises(ConfigError, match="has no 'udp_port'"):
        load_config(paths, env={})
    paths.network_json.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(paths, env={})


def test_systemd_directories_win(tmp_path: Path) -> None:
    env = {
        "STATE_DIRECTORY": str(tmp_path / "s"),
        "RUNTIME_DIRECTORY": str(tmp_path / "r"),
        "BITDUST_STATE_DIR": "/nowhere",
    }
    paths = Paths.for_instance("supplier", env)
    assert paths.state_dir == tmp_path / "s"
    assert paths.pidfile == tmp_path / "r" / "bitdust.pid"
    assert paths.conffile == Path("/etc/bitdust/supplier.conf")


def test_instance_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="not valid"):
        Paths.for_instance("../etc", {})


# -- editing -------------------------------------------------------------------------------------

CONFFILE = """\
# Supplier settings.
# services/supplier/donated-space = 8 GB

services/supplier/enabled = true
# trailing comment line
interface/api/rest-http-port = 8184
"""


def test_edit_replaces_only_that_line(paths: Paths) -> None:
    paths.conffile.write_text(CONFFILE)
    edit_conffile(paths.conffile, "interface/api/rest-http-port", "9000")
    assert paths.conffile.read_text() == CONFFILE.replace("8184", "9000")


def test_edit_inserts_after_the_commented_default(paths: Paths) -> None:
    paths.conffile.write_text(CONFFILE)
    edit_conffile(paths.conffile, "services/supplier/donated-space", "50 GB")
    lines = paths.conffile.read_text().splitlines()
    assert lines[1] == "# services/supplier/donated-space = 8 GB"
    assert lines[2] == "services/supplier/donated-space = 50 GB"
    assert len(lines) == len(CONFFILE.splitlines()) + 1


def test_edit_appends_a_new_key_and_keeps_mode(paths: Paths) -> None:
    paths.conffile.write_text("a_comment_only = \n".replace("a_comment_only = ", "# hi"))
    os.chmod(paths.conffile, 0o640)
    edit_conffile(paths.conffile, "services/customer/suppliers-number", "4")
    assert paths.conffile.read_text() == "# hi\nservices/customer/suppliers-number = 4\n"
    assert paths.conffile.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("services/supplier/donated-spase", "5 GB", UnknownKey),
        ("services/supplier/donated-space", "banana", BadValue),
        ("services/customer/suppliers-number", "3", BadValue),
        ("services/entangled-dht/known-nodes", "host-a.com", BadValue),
    ],
)
def test_refused_edit_leaves_file_byte_for_byte(
    paths: Paths, key: str, value: str, error: type[Exception]
) -> None:
    paths.conffile.write_bytes(CONFFILE.encode())
    before = paths.conffile.stat()
    with pytest.raises(error):
        edit_conffile(paths.conffile, key, value)
    assert paths.conffile.read_bytes() == CONFFILE.encode()
    assert paths.conffile.stat().st_ino == before.st_ino
    assert sorted(p.name for p in paths.config_dir.iterdir()) == ["supplier.conf"]


def test_a_missing_role_preset_is_an_error(paths: Paths, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BITDUST_ROLES_DIR", str(tmp_path / "no-roles"))
    with pytest.raises(ConfigError, match="preset of role 'supplier' is missing"):
        load_config(paths, env={})
