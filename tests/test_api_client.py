"""The CLI's API client reads the instance's secret file as outside input: a file that is not a
secret is one clear line, never a traceback or an internal error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli, node_env


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
