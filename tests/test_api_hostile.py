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
