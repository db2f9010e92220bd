"""Where each known peer's identity can be fetched from, kept across restarts.

The directory learns an IDURL's other sources from the last verified document fetched for it, and
falls back to them when the IDURL's own server is down: a peer whose first identity server is down
is found on its second, as the guide's two identity servers intend. In memory only, a restart
forgot them, and such a peer could not be found until its first server came back. The p2p service
keeps them in ``p2p-sources.json`` in the node's state directory, read at start and written at
stop.

Nothing in the file is trusted: a source only says where else to look, and the document found there
must still verify and name the IDURL asked for. It is checked all the same, as any input is; a file
that does not pass is reported, ignored (the sources are learned again) and left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from bitdust.files import FileError, atomic_write, read_bounded
from bitdust.identity.document import MAX_SOURCES
from bitdust.identity.errors import IdurlError
from bitdust.identity.idurl import parse_idurl
from bitdust.p2p.directory import MAX_CACHED, Sources

FILE_NAME = "p2p-sources.json"
#: The file's format; a newer one is left alone, as a node that was downgraded finds it.
VERSION = 1
MAX_FILE_SIZE = 4 * 1024 * 1024
FILE_MODE = 0o640


class SourcesFileError(Exception):
    """The sources file cannot be used; the message names it and says why."""


def load_sources(path: Path) -> Sources:
    """Each IDURL's sources as the file keeps them; an empty map when there is no file."""
    if not path.exists():
        return {}
    try:
        kept = json.loads(read_bounded(path, MAX_FILE_SIZE, what=str(path)))
    except (FileError, ValueError) as exc:
        raise SourcesFileError(f"{path}: {exc}") from None
    if not isinstance(kept, dict) or not isinstance(kept.get("version"), int):
        raise SourcesFileError(f"{path}: not a sources file (no version)")
    if kept["version"] != VERSION:
        raise SourcesFileError(
            f"{path}: format version {kept['version']}, this node reads {VERSION} (upgrade)"
        )
    peers = kept.get("sources")
    if not isinstance(peers, dict) or len(peers) > MAX_CACHED:
        raise SourcesFileError(f"{path}: 'sources' must map at most {MAX_CACHED} IDURLs")
    try:
        return {idurl: _checked(idurl, sources) for idurl, sources in peers.items()}
    except (IdurlError, ValueError) as exc:
        raise SourcesFileError(f"{path}: {exc}") from None


def save_sources(path: Path, sources: Mapping[str, tuple[str, ...]]) -> None:
    """Replace the file atomically (FileError says why it could not be written)."""
    data = {"version": VERSION, "sources": {idurl: list(kept) for idurl, kept in sources.items()}}
    atomic_write(path, json.dumps(data).encode(), mode=FILE_MODE, overwrite=True)


def _checked(idurl: str, sources: object) -> tuple[str, ...]:
    """``sources`` as an identity document of ``idurl`` could name them: 1 to MAX_SOURCES
    IDURLs, ``idurl`` among them."""
    if not isinstance(sources, list) or not 0 < len(sources) <= MAX_SOURCES:
        raise ValueError(f"{idurl[:100]!r}: expected a list of 1 to {MAX_SOURCES} sources")
    for text in (idurl, *sources):
        parse_idurl(text)  # IdurlError for anything else, text or not
    if idurl not in sources:
        raise ValueError(f"{idurl[:100]!r}: its sources do not name it")
    return tuple(sources)
