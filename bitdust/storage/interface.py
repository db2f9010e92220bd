"""The customer's storage as the REST API sees it: what a file is called on the network, what
an upload reports, and the errors that stop a backup or name something the catalogue lacks.

They live apart from the pipeline and the catalogue so that the API's routes can name them
without loading either: a node that backs nothing up (a supplier, a router, a seed) never
imports the customer's code (DESIGN §5).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

MAX_REMOTE_PATH = 4096
MAX_NAME = 255


class BackupError(Exception):
    """A backup or a restore cannot go on; the message says why, in words the user can act on."""


class NotInCatalogue(Exception):
    """A path, version, chunk, snapshot or placement the catalogue does not hold; the message
    names it."""


def normalize_remote(path: str, own_names: tuple[str, ...] = ()) -> str:
    """A remote path as the catalogue keeps it: relative, '/'-separated, no '.' or '..'.

    BitDust's form ``master$alice@host-a.com:docs/a.txt`` is accepted for this node's own
    identity (``own_names`` are its ``alice@host-a.com`` forms); only the path part is kept."""
    if "$" in path and ":" in path:
        owner, _, rest = path.partition(":")
        if owner.partition("$")[2] not in own_names:
            raise BackupError(f"{path!r}: not a path of this node's own identity")
        path = rest
    if not path or len(path.encode("utf-8", "surrogatepass")) > MAX_REMOTE_PATH or "\0" in path:
        raise BackupError(f"remote path {path[:80]!r}: expected 1 to {MAX_REMOTE_PATH} bytes")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise BackupError(f"remote path {path[:80]!r}: '..' and empty paths are not allowed")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME for part in parts):
        raise BackupError(f"remote path {path[:80]!r}: a name is longer than {MAX_NAME} bytes")
    return posixpath.join(*parts)


@dataclass(frozen=True)
class UploadResult:
    remote: str
    version: int
    size: int
    chunks: int
    new_chunks: int
    sent_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "version": self.version,
            "size": self.size,
            "chunks": self.chunks,
            "new_chunks": self.new_chunks,
            "sent_bytes": self.sent_bytes,
            "seconds": round(self.seconds, 3),
        }
