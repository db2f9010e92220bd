"""The REST API against a real node: the secret, BitDust's envelope, argument checks, routes."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Node, cli, running_node

SEED = {"services/entangled-dht/known-nodes": "genesis"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("api"), instance="dht-seed", settings=SEED) as n:
        yield n


def test_request_without_secret_is_refused_with_the_envelope(node: Node) -> None:
    status, envelope = node.api("GET", "/process/health/v1", secret=False)
    assert status == 401
    assert envelope == {"status": "ERROR", "errors": ["access denied"]}
    status, _ = node.api("GET", "/process/health/v1", secret=False,
                         headers={"api_secret": "wrong"})  # fmt: skip
    assert status == 401


def test_bearer_token_and_both_route_forms(node: Node) -> None:
    bearer = {"Authorization": f"Bearer {node.secret}"}
    for path in ("/process/health/v1", "/v1/process/health"):
        status, envelope = node.api("GET", path, secret=False, headers=bearer)
        assert status == 200 and envelope["status"] == "OK"
        assert envelope["result"] == {"ready": True}
        assert float(envelope["execution"]) >= 0


def test_process_info_runs_on_uvloop(node: Node) -> None:
    info = node.ok("GET", "/process/info/v1")
    assert info["loop"] == "uvloop"
    assert info["instance"] == "dht-seed" and info["role"] == "dht-seed"
    assert info["api"] == {"host": "127.0.0.1", "port": node.api_port}


def test_network_status_with_dht_section(node: Node) -> None:
    result = node.ok("GET", "/network/status/v1?dht=1")
    assert result["dht"]["contacts"] == 0
    assert result["dht"]["layers"][0]["contacts"] == 0
    assert result["services_on"] == ["entangled-dht"]
    assert "dht" not in node.ok("GET", "/network/status/v1")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/network/status/v1?dht=maybe", None, 400, "field 'dht': expected true or false"),
        ("GET", "/network/status/v1?colour=1", None, 400, "unknown field 'colour'"),
        ("POST", "/config/set/logs/level/v1", b"{not json", 400, "not valid JSON"),
        ("POST", "/config/set/logs/level/v1", b"[1, 2]", 400, "must be a JSON object"),
        ("POST", "/config/set/logs/level/v1", b'{"value": ["x"]}', 400, "field 'value': expected"),
        ("POST", "/config/set/logs/level/v1", b'{"valu": "x"}', 400, "unknown field 'valu'"),
        ("POST", "/config/set/logs/level/v1", b"{}", 400, "field 'value' is required"),
        ("POST", "/config/set/logs/level/v1", b'{"value": "loud"}', 400, "logs/level: 'loud'"),
        (
            "POST",
            "/config/set/logs/levle/v1",
            b'{"value": "debug"}',
            404,
            "did you mean logs/level",
        ),
        ("GET", "/config/get/services/nope/v1", None, 404, "unknown setting 'services/nope'"),
        ("GET", "/service/info/teleport/v1", None, 404, "unknown service 'teleport'"),
        ("GET", "/no/such/route/v1", None, 404, "was not found"),
        ("POST", "/dht/value/set/v1", b'{"key": "k"}', 400, "field 'value' is required"),
        (
            "POST",
            "/dht/value/set/v1",
            b'{"key": "k", "value": "v", "expire": "soon"}',
            400,
            "field 'expire': expected a whole number",
        ),
    ],
)
def test_bad_requests_get_clear_errors_and_change_nothing(
    node: Node, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    settings = node.base / "state" / "dht-seed" / "api-settings.conf"
    before = settings.read_bytes() if settings.exists() else None
    got, envelope = node.api(method, path, raw=body)
    assert got == status
    assert envelope["status"] == "ERROR"
    assert any(message in error for error in envelope["errors"]), envelope
    assert (settings.read_bytes() if settings.exists() else None) == before


def test_config_set_writes_api_settings_and_reports_the_layer(node: Node) -> None:
    result = node.ok("POST", "/config/set/logs/level/v1", {"value": "debug"})
    assert result["value"] == "debug" and result["applied"] is True
    settings = node.base / "state" / "dht-seed" / "api-settings.conf"
    assert result["layer"] == str(settings)
    assert "logs/level = debug" in settings.read_text()
    got = node.ok("GET", "/v1/config/get/logs/level")
    assert got["value"] == "debug"
    result = node.ok("POST", "/config/set/services/entangled-dht/bucket-size/v1", {"value": 5})
    assert result["restart_needed"] is True
    listed = {row["key"]: row for row in node.ok("GET", "/config/list/v1")}
    assert listed["services/entangled-dht/bucket-size"]["value"] == "5"
    assert listed["services/supplier/enabled"]["layer"] == "role dht-seed"


def test_services_and_states(node: Node) -> None:
    services = {row["name"]: row for row in node.ok("GET", "/service/list/v1")}
    assert services["entangled-dht"]["state"] == "ON"
    assert services["private-messages"]["state"] == "OFF"
    assert services["proxy-transport"]["conflicts"] == ["proxy-server"]
    info = node.ok("GET", "/service/info/service_entangled_dht/v1")
    assert info["state"] == "ON" and "contacts" in info
    states = node.ok("GET", "/automat/list/v1")
    assert states == node.ok("GET", "/state/list/v1")
    assert {"index": 1, "name": "service_entangled_dht", "state": "ON"} in states


def test_the_unix_socket_serves_the_same_api(node: Node) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(node.runtime / "api.sock"))
    connection = http.client.HTTPConnection("localhost")
    connection.sock = sock
    connection.request("GET", "/process/health/v1", headers={"api_secret": node.secret})
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["result"] == {"ready": True}
    connection.close()


def test_secret_file_is_private(node: Node) -> None:
    mode = (node.runtime / "api.secret").stat().st_mode & 0o777
    assert mode in (0o600, 0o640)
    assert mode & 0o007 == 0


def test_without_auth_a_foreign_host_header_is_refused(tmp_path: Path) -> None:
    settings = {**SEED, "interface/api/auth-secret-enabled": "false"}
    with running_node(tmp_path, instance="dht-seed", settings=settings) as node:
        status, envelope = node.api("GET", "/process/health/v1", secret=False)
        assert status == 200 and envelope["result"]["ready"] is True
        status, envelope = node.api("GET", "/process/health/v1", secret=False,
                                    headers={"Host": "evil.example.com"})  # fmt: skip
        assert status == 403
        assert "not local" in envelope["errors"][0]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run the CLI as the user nobody")  # fmt: skip
def test_cli_as_a_user_who_cannot_read_the_secret(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        for directory in ("etc", "run", "run/dht-seed"):
            (tmp_path / directory).chmod(0o755)
        (tmp_path / "etc" / "dht-seed.conf").chmod(0o644)
        result = cli(node.env, "--instance", "dht-seed", "states", user="nobody")
        assert result.returncode == 1
        assert "cannot read the API secret" in result.stderr
        assert "permission denied" in result.stderr and "bitdust" in result.stderr
        assert "Traceback" not in result.stderr
        readable = cli(node.env, "--instance", "dht-seed", "states")
        assert readable.returncode == 0


def test_cli_api_calls_any_route(node: Node) -> None:
    run = ("--instance", "dht-seed", "api")
    status = json.loads(cli(node.env, *run, "GET", "network/status", "dht=1", check=True).stdout)
    assert status["dht"]["contacts"] == 0
    stored = cli(node.env, *run, "post", "/dht/value/set/v1", "key=cli:k", "value=v", check=True)
    assert json.loads(stored.stdout)["key"] == "cli:k"
    found = json.loads(cli(node.env, *run, "GET", "dht/value/get", "key=cli:k", check=True).stdout)
    assert [v["value"] for v in found["values"]] == ["v"]
    wrong = cli(node.env, *run, "GET", "network/status", "colour=1")
    assert wrong.returncode == 1
    assert wrong.stderr == "bitdust: unknown field 'colour'\n"
