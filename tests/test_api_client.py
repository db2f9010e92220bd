"""The CLI's API client reads the instance's secret file as outside input: a file that is not a
secret is one clear line, never a traceback or an internal error."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tests.helpers import cli, node_env, write_conf


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not text", "is not an API secret; restart the node to write a new one"),
        (b"x" * 5000, "is not an API secret; restart the node to write a new one"),
        (b"abc\x1bdef", "is not an API secret; restart the node to write a new one"),
        (None, "cannot read the API secret"),  # a directory
    ],
)
def test_a_broken_secret_file_is_one_line(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    secret = tmp_path / "run" / "default" / "api.secret"
    secret.parent.mkdir(parents=True)
    if content is None:
        secret.mkdir()
    else:
        secret.write_bytes(content)
    result = cli(node_env(tmp_path), "states")
    assert result.returncode == 1
    assert result.stderr.startswith("bitdust: ") and reason in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_something_else_on_the_api_port_is_one_line(tmp_path: Path) -> None:
    """Not a bitdust node on the port (another program took it): said so, no traceback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        write_conf(tmp_path, "default", {"interface/api/rest-http-port": port})

        def answer_garbage() -> None:
            peer, _ = server.accept()
            with peer:
                peer.recv(65536)
                peer.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        result = cli(node_env(tmp_path), "states", timeout=20)
        thread.join(5)
    assert result.returncode == 1
    assert result.stderr == (
        f"bitdust: 127.0.0.1:{port} did not answer as a bitdust node: BadStatusLine\n"
    )
