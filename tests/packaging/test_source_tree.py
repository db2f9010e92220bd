"""From source: `make venv` installs bitdust into the virtualenv, editable, so `.venv/bin/bitdust`
is the command a developer runs and it runs the tree being edited (issue 16.10)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import bitdust
from tests.packaging.conftest import REPO, bare_env

VENV = REPO / ".venv"


@pytest.fixture(scope="module")
def venv_bitdust() -> Path:
    command = VENV / "bin" / "bitdust"
    if not command.is_file():
        pytest.fail(f"{command} is missing: run 'make venv'")
    return command


def test_venv_command_runs_without_activation(venv_bitdust: Path, tmp_path: Path) -> None:
    """Neither an activated virtualenv nor the tree as working directory is needed."""
    result = subprocess.run(
        [str(venv_bitdust), "--version"],
        cwd=tmp_path,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"bitdust {bitdust.__version__}"


def test_venv_install_is_the_editable_source_tree(tmp_path: Path) -> None:
    """The installed distribution points at this tree, and an import outside it finds the
    tree's modules: an edit is what .venv/bin/bitdust runs next, with no reinstall."""
    probe = (
        "import bitdust.cli, importlib.metadata, json; "
        "d = importlib.metadata.distribution('bitdust'); "
        "print(json.dumps([bitdust.cli.__file__, d.read_text('direct_url.json')]))"
    )
    result = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    module, direct_url = json.loads(result.stdout)
    assert Path(module) == REPO / "bitdust" / "cli.py"
    origin = json.loads(direct_url)
    assert origin["dir_info"] == {"editable": True}
    assert origin["url"] == REPO.as_uri()
