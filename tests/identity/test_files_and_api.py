"""files.atomic_write's typed refusal to overwrite, and the identity/backup route that maps it
to 409 by type (never by the message's text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitdust.api.identity import identity_backup
from bitdust.api.server import ApiError, Call
from bitdust.config import Paths, load_config
from bitdust.files import FileError, FileExists, atomic_write
from bitdust.identity.errors import KeyFileError
from bitdust.identity.local import LocalIdentity
from bitdust.identity.propagate_service import IdentityPropagateService
from bitdust.node.node import Node
from bitdust.node.service import ServiceState
from tests.identity.conftest import make_identity


def test_refusing_to_overwrite_is_its_own_type_and_leaves_the_file(tmp_path):
    path = tmp_path / "alice.key"
    path.write_bytes(b"precious")
    with pytest.raises(FileExists, match=r"refusing to overwrite .*alice\.key: the file exists"):
        atomic_write(path, b"new", mode=0o600, overwrite=False)
    # a caller that asks for its own error type gets it for this failure too
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        atomic_write(path, b"new", mode=0o600, overwrite=False, error=KeyFileError)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key"]
    assert issubclass(FileExists, FileError)


class Process:
    def __init__(self, tmp_path: Path, key) -> None:
        env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path)}
        self.config = load_config(Paths.for_instance("default", env), env={})
        self.node = Node(self.config)
        service = IdentityPropagateService(self.node)
        service.current = LocalIdentity(key, make_identity(key))
        slot = self.node.slots["identity-propagate"]
        slot.state, slot.service = ServiceState.ON, service


async def test_backup_over_an_existing_file_is_409_and_the_file_is_unchanged(tmp_path, key):
    path = tmp_path / "backup.key"
    path.write_bytes(b"precious")
    call = Call(Process(tmp_path, key), None, {"destination_path": str(path), "passphrase": None})  # type: ignore[arg-type]
    with pytest.raises(ApiError) as refused:
        await identity_backup.handler(call)
    assert refused.value.status == 409
    assert "refusing to overwrite" in str(refused.value)
    assert path.read_bytes() == b"precious"


async def test_backup_where_the_node_cannot_write_names_the_cli_command(tmp_path, key):
    path = tmp_path / "missing-dir" / "backup.key"
    call = Call(Process(tmp_path, key), None, {"destination_path": str(path), "passphrase": None})  # type: ignore[arg-type]
    with pytest.raises(ApiError) as refused:
        await identity_backup.handler(call)
    assert refused.value.status == 409
    assert f"use 'bitdust identity backup {path}'" in str(refused.value)
