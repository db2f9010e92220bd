"""Peers' identity sources kept across restarts: a peer whose first identity server is down is
still found after the node restarted; a file that does not pass is refused and left alone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bitdust.p2p.directory import Directory, PeerUnknown
from bitdust.p2p.sources import (
    FILE_NAME,
    MAX_FILE_SIZE,
    SourcesFileError,
    load_sources,
    save_sources,
)
from tests.p2p.peers import BOB
from tests.p2p.test_directory import BOB_ON_HOST_D, Server, signed
from tests.p2p.test_service import node_for


async def test_a_restarted_directory_finds_a_peer_whose_first_server_is_down(tmp_path: Path):
    server = Server()
    server.documents[BOB] = signed(BOB, 3, more_sources=(BOB_ON_HOST_D,)).to_xml()
    server.documents[BOB_ON_HOST_D] = server.documents[BOB]
    path = tmp_path / FILE_NAME
    first_run = Directory(server.fetch)
    await first_run.peer(BOB)  # learns bob's second source from his document
    save_sources(path, first_run.known_sources())
    assert oct(path.stat().st_mode & 0o777) == "0o640"

    del server.documents[BOB]  # host-b.com's identity server is down
    with pytest.raises(PeerUnknown, match="HTTP 404"):
        await Directory(server.fetch).peer(BOB)  # what a restart without the file did
    restarted = Directory(server.fetch, sources=load_sources(path))
    assert (await restarted.peer(BOB)).document.sources == (BOB, BOB_ON_HOST_D)


def test_no_file_is_no_sources(tmp_path: Path):
    assert load_sources(tmp_path / FILE_NAME) == {}


BAD_FILES = {
    "not json": (b"{nope", "Expecting property name"),
    "no version": (b'{"sources": {}}', "no version"),
    "newer": (b'{"version": 2, "sources": {}}', "format version 2, this node reads 1"),
    "sources not a map": (b'{"version": 1, "sources": []}', "must map at most 4096"),
    "not a list": (
        json.dumps({"version": 1, "sources": {BOB: BOB}}).encode(),
        "expected a list of 1 to 6 sources",
    ),
    "not an idurl": (
        json.dumps({"version": 1, "sources": {BOB: [BOB, "file:///etc/passwd"]}}).encode(),
        "is not an IDURL",
    ),
    "not text": (
        json.dumps({"version": 1, "sources": {BOB: [BOB, 7]}}).encode(),
        "is not an IDURL",
    ),
    "does not name its idurl": (
        json.dumps({"version": 1, "sources": {BOB: [BOB_ON_HOST_D]}}).encode(),
        "its sources do not name it",
    ),
    "too many sources": (
        json.dumps({"version": 1, "sources": {BOB: [BOB] * 7}}).encode(),
        "expected a list of 1 to 6 sources",
    ),
    "too large": (b" " * (MAX_FILE_SIZE + 1), "too large"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_does_not_pass_is_refused_with_the_reason(tmp_path: Path, name: str):
    data, reason = BAD_FILES[name]
    path = tmp_path / FILE_NAME
    path.write_bytes(data)
    with pytest.raises(SourcesFileError, match=reason):
        load_sources(path)


async def test_the_service_keeps_the_sources_at_stop_and_reads_them_at_start(tmp_path: Path):
    node = node_for(tmp_path)
    node.paths.make_dirs()  # as the daemon does before the services start
    await node.start()
    p2p = node.service("p2p")
    p2p.directory._sources[BOB] = (BOB, BOB_ON_HOST_D)  # as a fetch of bob's document leaves it
    await node.stop()
    path = node.paths.state_dir / FILE_NAME
    assert load_sources(path) == {BOB: (BOB, BOB_ON_HOST_D)}

    node = node_for(tmp_path)
    await node.start()
    assert node.service("p2p").directory.known_sources() == {BOB: (BOB, BOB_ON_HOST_D)}
    await node.stop()


async def test_the_service_leaves_a_file_it_cannot_use_alone(tmp_path: Path, caplog):
    node = node_for(tmp_path)
    node.paths.make_dirs()
    path = node.paths.state_dir / FILE_NAME
    path.write_bytes(b'{"version": 2, "sources": {"from": "a newer node"}}')
    before = path.stat()
    with caplog.at_level(logging.WARNING, logger="bitdust.p2p.service"):
        await node.start()
        node.service("p2p").directory._sources[BOB] = (BOB,)
        await node.stop()
    assert "format version 2, this node reads 1 (upgrade); not used, and left as it is" in (
        caplog.text
    )
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == b'{"version": 2, "sources": {"from": "a newer node"}}'
