"""Crafted requests against a real node's REST API: each is refused with a reason, nothing
changes, and the node keeps serving its legitimate client (issue 10, items 11-13)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitdust.api.server import MAX_BODY
from tests.helpers import Node, running_node

SEED = {"services/entangled-dht/known-nodes": "genesis"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("hostile"), instance="dht-seed", settings=SEED) as n:
        yield n


def settings_file(node: Node) -> Path:
    return node.base / "state" / node.instance / "api-settings.conf"


def send_raw(node: Node, *parts: bytes, pause: float = 0.0) -> tuple[int, dict[str, Any]]:
    """Send ``parts`` as separate TCP segments (``pause`` seconds apart); (status, envelope)."""
    with socket.create_connection((node.api_host, node.api_port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the node answered before reading everything
        response = sock.makefile("rb")
        status = int(response.readline().split()[1])
        length = 0
        while (line := response.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(response.read(length))


def request_head(node: Node, path: str, length: int, content_type: str = "application/json",
                 extra: str = "") -> bytes:  # fmt: skip
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{node.api_port}\r\n"
        f"api_secret: {node.secret}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


# -- item 11: bodies ------------------------------------------------------------------------------


def test_a_body_split_across_tcp_segments_is_read_whole(node: Node) -> None:
    body = json.dumps({"value": "warning"}).encode()
    head = request_head(node, "/config/set/logs/level/v1", len(body))
    status, envelope = send_raw(node, head + body[:7], body[7:], pause=0.2)
    assert (status, envelope["status"]) == (200, "OK"), envelope
    assert envelope["result"]["value"] == "warning"
    assert "logs/level = warning" in settings_file(node).read_text()


def test_a_body_over_the_limit_is_413_before_it_is_read(node: Node) -> None:
    head = request_head(node, "/dht/value/set/v1", 20 * 1024 * 1024)
    status, envelope = send_raw(node, head + b'{"key": "k", "value": "' + b"x" * 65536)
    assert status == 413
    assert envelope["errors"] == [f"request body larger than {MAX_BODY} bytes"]


def test_a_chunked_body_over_the_limit_is_413(node: Node) -> None:
    head = (
        f"POST /dht/value/set/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\napi_secret: {node.secret}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    status, envelope = send_raw(node, head + chunk * (MAX_BODY // len(piece) + 2))
    assert status == 413
    assert envelope["errors"] == [f"request body larger than {MAX_BODY} bytes"]
    assert node.ok("GET", "/process/health/v1") == {"ready": True}


# -- item 12: input that used to end in a 500 ----------------------------------------------------


def test_a_deeply_nested_body_is_400(node: Node) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    status, envelope = node.api("POST", "/config/set/logs/level/v1", raw=body)
    assert status == 400
    assert envelope["errors"] == ["request body is not valid JSON: nested too deeply"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"value": ' + b"1" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
        (b'{"value": NaN}', "NaN is not a JSON value"),
        (b'{"value": -Infinity}', "-Infinity is not a JSON value"),
    ],
)
def test_numbers_json_does_not_have_are_400(node: Node, body: bytes, reason: str) -> None:
    status, envelope = node.api(
        "POST", "/config/set/services/entangled-dht/rpc-timeout/v1", raw=body
    )
    assert status == 400
    assert envelope["errors"][0].startswith("request body is not valid JSON: ")
    assert reason in envelope["errors"][0]


@pytest.mark.parametrize("digits", ["%C2%B2", "%D9%A1", "%EF%BC%91"])  # superscript, Arabic, wide
def test_a_whole_number_in_a_query_is_ascii_digits(node: Node, digits: str) -> None:
    status, envelope = node.api("POST", f"/dht/value/set/v1?key=k&value=v&expire={digits}")
    assert (status, envelope["errors"]) == (400, ["field 'expire': expected a whole number"])


def test_a_whole_number_beyond_64_bits_is_400(node: Node) -> None:
    """Whole numbers reach SQLite and the OS, which take 64 bits: beyond, a reason, not a 500."""
    for number in (2**63, -(2**63) - 1, 10**30):
        status, envelope = node.api("POST", "/dht/value/set/v1", {"key": "k", "value": "v",
                                                                   "expire": number})  # fmt: skip
        assert (status, envelope["errors"]) == (
            400,
            ["field 'expire': a whole number out of range"],
        )
    status, envelope = node.api(
        "POST", "/dht/value/set/v1?key=k&value=v&expire=9999999999999999999"
    )
    assert (status, envelope["errors"]) == (400, ["field 'expire': a whole number out of range"])


def test_a_lone_surrogate_in_a_setting_is_400_and_nothing_is_written(node: Node) -> None:
    before = settings_file(node).read_bytes() if settings_file(node).exists() else None
    body = b'{"value": "a\\ud800b"}'
    path = "/config/set/services/proxy-transport/preferred-routers/v1"
    status, envelope = node.api("POST", path, raw=body)
    assert status == 400
    assert envelope["errors"] == ["field 'value': not valid Unicode text (a lone surrogate)"]
    after = settings_file(node).read_bytes() if settings_file(node).exists() else None
    assert after == before


@pytest.mark.parametrize("header", ["api_secret", "Authorization"])
def test_a_non_ascii_secret_is_401(node: Node, header: str) -> None:
    value = b"s\xe9cr\xe9t" if header == "api_secret" else b"Bearer s\xe9cr\xe9t"  # Latin-1
    head = (
        f"GET /process/health/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}: ".encode()
        + value
        + b"\r\nConnection: close\r\n\r\n"
    )
    assert send_raw(node, head) == (401, {"status": "ERROR", "errors": ["access denied"]})


def test_a_bearer_token_is_compared_with_the_secret(node: Node) -> None:
    """Issue 9 item 11: a wrong bearer or api_secret is refused, the right one accepted."""
    wrong = node.secret[:-1] + ("A" if node.secret[-1] != "A" else "B")
    refused = [
        {"Authorization": f"Bearer {wrong}"},
        {"api_secret": wrong},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {node.secret}"},
    ]
    for headers in refused:
        status, envelope = node.api("GET", "/process/health/v1", secret=False, headers=headers)
        assert (status, envelope["errors"]) == (401, ["access denied"]), headers
    for headers in ({"Authorization": f"Bearer {node.secret}"}, {"api_secret": node.secret}):
        status, envelope = node.api("GET", "/process/health/v1", secret=False, headers=headers)
        assert (status, envelope["result"]) == (200, {"ready": True}), headers


# -- item 13: requests made by web pages ----------------------------------------------------------


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with API auth turned off: only the page checks stand between it and a browser."""
    settings = {**SEED, "interface/api/auth-secret-enabled": "false"}
    base = tmp_path_factory.mktemp("open")
    with running_node(base, instance="dht-seed", settings=settings) as n:
        yield n


LEVEL = "/config/set/logs/level/v1"


def test_without_auth_a_cross_site_form_post_changes_nothing(open_node: Node) -> None:
    before = settings_file(open_node).read_bytes() if settings_file(open_node).exists() else None
    page = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, envelope = open_node.api("POST", LEVEL, {"value": "debug"}, headers=page, secret=False)
    assert status == 403
    assert envelope["errors"] == [
        "access denied: requests from web pages of 'http://evil.example' are refused"
    ]
    plain = {"Content-Type": "text/plain"}
    status, envelope = open_node.api("POST", LEVEL, {"value": "debug"}, headers=plain, secret=False)
    assert status == 415
    assert envelope["errors"] == ["POST requests must send Content-Type: application/json"]
    after = settings_file(open_node).read_bytes() if settings_file(open_node).exists() else None
    assert after == before
    assert open_node.ok("GET", "/config/get/logs/level/v1")["value"] == "info"


def test_without_auth_a_cross_site_get_cannot_stop_the_node(open_node: Node) -> None:
    page = {"Sec-Fetch-Site": "cross-site"}
    status, envelope = open_node.api("GET", "/process/stop/v1", headers=page, secret=False)
    assert status == 403
    assert envelope["errors"] == ["access denied: a cross-site request from a web page"]
    assert open_node.process.poll() is None
    assert open_node.ok("GET", "/process/health/v1") == {"ready": True}


def test_without_auth_the_local_operator_still_writes(open_node: Node) -> None:
    local = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{open_node.api_port}"}
    status, envelope = open_node.api(
        "POST", LEVEL, {"value": "warning"}, headers=local, secret=False
    )
    assert status == 200, envelope
    assert "logs/level = warning" in settings_file(open_node).read_text()


def test_with_auth_a_foreign_origin_is_refused_even_with_the_secret(node: Node) -> None:
    page = {"Origin": "http://evil.example"}
    status, envelope = node.api("GET", "/process/health/v1", headers=page)
    assert status == 403 and "web pages" in envelope["errors"][0]


# -- item 14: config/set writes only what the node accepts ----------------------------------------


def test_config_set_writes_nothing_the_reload_would_refuse(node: Node) -> None:
    node.ok("POST", "/config/set/services/proxy-transport/enabled/v1", {"value": True})
    before = settings_file(node).read_bytes()
    status, envelope = node.api(
        "POST", "/config/set/services/proxy-server/enabled/v1", {"value": True}
    )
    assert status == 400
    assert envelope["errors"] == [
        "services/proxy-server/enabled not changed: with it, services/proxy-server/enabled and "
        "services/proxy-transport/enabled are both true: proxy-server and proxy-transport cannot "
        "run on one node; set one of them to false"
    ]
    assert settings_file(node).read_bytes() == before
    assert node.ok("GET", "/config/get/services/proxy-server/enabled/v1")["value"] == "false"


def test_config_set_refuses_a_line_separator(node: Node) -> None:
    before = settings_file(node).read_bytes() if settings_file(node).exists() else None
    path = "/config/set/services/proxy-transport/preferred-routers/v1"
    status, envelope = node.api(
        "POST", path, {"value": "a\u2028interface/api/auth-secret-enabled = false"}
    )
    assert status == 400 and "contains U+2028 (line separator)" in envelope["errors"][0]
    assert (settings_file(node).read_bytes() if settings_file(node).exists() else None) == before
