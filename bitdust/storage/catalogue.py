"""The customer's catalogue: what it backed up and where every fragment of it lies (DESIGN §10).

One versioned SQLite file (:mod:`bitdust.sqlite_file`) at ``<state>/storage/catalogue.sqlite3``.
A path has versions; a version lists its chunks in order; a chunk (stored once per account,
however many versions use it) counts its references and lists its N placements, fragment i on
the supplier hired at position i. A chunk whose references fall to 0 stays listed until its
fragments are deleted on the suppliers (:meth:`Catalogue.forget_chunks`): the catalogue must never
forget a fragment that still takes a supplier's space.

Every change is one transaction and, when it changed a row, bumps ``generation``: the next issue
stores each generation (encrypted, from :meth:`Catalogue.snapshot_bytes`) on the suppliers. The
customer service calls in from the event loop and from worker threads: one lock keeps two
threads off the connection at once. Rows read back are data from a file: a malformed one raises
:class:`~bitdust.errors.DataFormatError` naming it, never a crash later.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitdust.errors import DataFormatError
from bitdust.sqlite_file import open_versioned
from bitdust.storage.wire import ID_SIZE as FRAGMENT_ID_SIZE

CHUNK_ID_SIZE = 32  # a keyed hash of the chunk's plaintext
SHA256_SIZE = 32
MAX_FRAGMENTS = 64  # the largest N a customer hires
MAX_CHUNK = 16 * 1024 * 1024  # the chunker's largest chunk

STORED, BAD = "stored", "bad"
PLACEMENT_STATES = (STORED, BAD)
RUNNING, DONE, FAILED = "running", "done", "failed"
SNAPSHOT_STATES = (RUNNING, DONE, FAILED)


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
        "INSERT INTO meta VALUES ('generation', 0)",
        "CREATE TABLE suppliers (position INTEGER PRIMARY KEY, idurl TEXT NOT NULL UNIQUE,"
        " hired_at REAL NOT NULL, quota INTEGER NOT NULL)",
        "CREATE TABLE snapshots (id INTEGER PRIMARY KEY, started_at REAL NOT NULL,"
        " finished_at REAL, state TEXT NOT NULL)",
        "CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT NOT NULL,"
        " snapshot INTEGER NOT NULL REFERENCES snapshots(id), size INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL, sha256 BLOB NOT NULL,"
        " created_at REAL NOT NULL)",
        "CREATE INDEX files_by_path ON files (path, id)",
        "CREATE TABLE chunks (id BLOB PRIMARY KEY, size INTEGER NOT NULL,"
        " stored_size INTEGER NOT NULL, k INTEGER NOT NULL, n INTEGER NOT NULL,"
        " refs INTEGER NOT NULL)",
        "CREATE TABLE file_chunks (file INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, chunk BLOB NOT NULL REFERENCES chunks(id),"
        " PRIMARY KEY (file, seq))",
        "CREATE TABLE placements (chunk BLOB NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,"
        " fragment INTEGER NOT NULL, supplier TEXT NOT NULL, fragment_id BLOB NOT NULL,"
        " state TEXT NOT NULL, verified_at REAL, PRIMARY KEY (chunk, fragment))",
        # Audits and rebuilding go supplier by supplier.
        "CREATE INDEX placements_by_supplier ON placements (supplier)",
    ):
        db.execute(statement)


# MIGRATIONS[n] upgrades a catalogue from version n to n + 1.
MIGRATIONS = (_migrate_0_to_1,)
SCHEMA_VERSION = len(MIGRATIONS)
WHAT = "catalogue"


class NotInCatalogue(Exception):
    """A path, version, chunk, snapshot or placement the catalogue does not hold; the message
    names it."""


@dataclass(frozen=True)
class SupplierRow:
    position: int
    idurl: str
    hired_at: float
    quota: int


@dataclass(frozen=True)
class ChunkRow:
    id: bytes
    size: int  # of the plaintext
    stored_size: int  # of one fragment
    k: int
    n: int
    refs: int


@dataclass(frozen=True)
class Placement:
    index: int
    supplier: str
    fragment_id: bytes
    state: str
    verified_at: float | None


@dataclass(frozen=True)
class VersionInfo:
    """One version of a path without its chunk list (a listing would not need it)."""

    version: int
    path: str
    snapshot: int
    size: int
    mtime_ns: int  # exact: a restored file gets back the very mtime it had
    mode: int
    sha256: bytes
    created_at: float


@dataclass(frozen=True)
class FileVersion(VersionInfo):
    chunk_ids: tuple[bytes, ...]


@dataclass(frozen=True)
class FileSummary:
    """The latest version of a path, and how many versions it has."""

    latest: VersionInfo
    versions: int


# Checks of the columns read back, by kind (rows are data from a file).
def _blob(size: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, bytes) and len(value) == size


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _time(value: Any) -> bool:
    return type(value) in (int, float)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


_COUNT = _int_in(0, 2**63 - 1)
_INT64 = _int_in(-(2**63), 2**63 - 1)
_COLUMN_CHECKS: dict[str, Callable[[Any], bool]] = {
    "position": _int_in(0, MAX_FRAGMENTS - 1),
    "idurl": _text,
    "supplier": _text,
    "path": _text,
    "hired_at": _time,
    "created_at": _time,
    "verified_at": lambda value: value is None or _time(value),
    "quota": _COUNT,
    "version": _COUNT,
    "snapshot": _COUNT,
    "versions": _COUNT,
    "size": _COUNT,
    "mode": _COUNT,
    "mtime_ns": _INT64,
    "refs": _COUNT,
    "stored_size": _COUNT,
    "k": _int_in(1, MAX_FRAGMENTS),
    "n": _int_in(1, MAX_FRAGMENTS),
    "index": _int_in(0, MAX_FRAGMENTS - 1),
    "id": _blob(CHUNK_ID_SIZE),
    "fragment_id": _blob(FRAGMENT_ID_SIZE),
    "sha256": _blob(SHA256_SIZE),
    "state": lambda value: value in PLACEMENT_STATES,
}

_SUPPLIER = "position, idurl, hired_at, quota"
_CHUNK = "id, size, stored_size, k, n, refs"
_PLACEMENT = 'fragment AS "index", supplier, fragment_id, state, verified_at'
_VERSION = "id AS version, path, snapshot, size, mtime_ns, mode, sha256, created_at"
_UNDER = "(path = :path OR (path >= :path || '/' AND path < :path || '0'))"  # '0' follows '/'


class Catalogue:
    """The catalogue file of one customer; every public method is thread-safe."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = open_versioned(self.path, MIGRATIONS, WHAT)
        self._db.row_factory = sqlite3.Row
        rows = self._db.execute("SELECT value FROM meta WHERE name = 'generation'").fetchall()
        if len(rows) != 1 or not _COUNT(rows[0][0]):
            self._db.close()
            raise DataFormatError(
                f"{self.path}: the catalogue's generation is missing or malformed"
            )
        self._generation: int = rows[0][0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def generation(self) -> int:
        """How many committed changes the catalogue has seen; a newer copy has a larger one."""
        return self._generation

    # Suppliers --------------------------------------------------------------------------------

    def set_suppliers(self, idurls: Sequence[str], quota: int) -> None:
        """Hire ``idurls`` at positions 0..N-1 in place of the current list; a supplier already
        hired keeps its ``hired_at``."""
        if len(set(idurls)) != len(idurls) or not all(map(_text, idurls)):
            raise ValueError(f"suppliers {list(idurls)}: expected distinct, non-empty IDURLs")
        if len(idurls) > MAX_FRAGMENTS or not _COUNT(quota):
            raise ValueError(f"at most {MAX_FRAGMENTS} suppliers and a quota >= 0, not {quota!r}")
        with self._transaction() as db:
            current = self._rows(f"SELECT {_SUPPLIER} FROM suppliers ORDER BY position")
            if [(row["idurl"], row["quota"]) for row in current] == [(i, quota) for i in idurls]:
                return
            hired = {row["idurl"]: row for row in current}
            now = self._clock()
            db.execute("DELETE FROM suppliers")
            db.executemany(
                "INSERT INTO suppliers VALUES (?, ?, ?, ?)",
                [
                    (position, idurl, hired[idurl]["hired_at"] if idurl in hired else now, quota)
                    for position, idurl in enumerate(idurls)
                ],
            )

    def suppliers(self) -> list[SupplierRow]:
        with self._lock:
            query = f"SELECT {_SUPPLIER} FROM suppliers ORDER BY position"
            return [SupplierRow(**row) for row in self._rows(query)]

    # Snapshots --------------------------------------------------------------------------------

    def begin_snapshot(self) -> int:
        """Start an upload run; versions added in it name it."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO snapshots (started_at, state) VALUES (?, ?)", (self._clock(), RUNNING)
            )
            return cursor.lastrowid

    def end_snapshot(self, snapshot: int, ok: bool) -> None:
        with self._transaction() as db:
            self._running_snapshot(snapshot)
            db.execute(
                "UPDATE snapshots SET finished_at = ?, state = ? WHERE id = ?",
                (self._clock(), DONE if ok else FAILED, snapshot),
            )

    # Chunks -----------------------------------------------------------------------------------

    def has_chunk(self, chunk_id: bytes) -> bool:
        """The chunk is known and all its N fragments are stored: nothing needs sending."""
        with self._lock:
            row = self._db.execute(
                "SELECT n, (SELECT COUNT(*) FROM placements WHERE chunk = chunks.id AND state = ?)"
                " FROM chunks WHERE id = ?",
                (STORED, chunk_id),
            ).fetchone()
            return row is not None and row[0] == row[1]

    def add_chunk(
        self,
        chunk_id: bytes,
        size: int,
        stored_size: int,
        k: int,
        n: int,
        placements: Sequence[tuple[int, str, bytes]],
    ) -> None:
        """Record a chunk whose fragments were just stored, as (fragment index, supplier IDURL,
        fragment id); its references start at 0. For a known chunk, the given placements
        replace those of the same index (a fragment sent again), the others stay."""
        _check_chunk_id(chunk_id)
        if not (1 <= k <= n <= MAX_FRAGMENTS and 0 <= size <= MAX_CHUNK and _COUNT(stored_size)):
            raise ValueError(
                f"chunk {chunk_id.hex()}: size {size!r}, stored size {stored_size!r}, "
                f"{k!r}-of-{n!r} are out of range"
            )
        indexes = [index for index, _, _ in placements]
        if len(set(indexes)) != len(indexes) or not all(0 <= index < n for index in indexes):
            raise ValueError(
                f"chunk {chunk_id.hex()}: fragment indexes {indexes} not distinct in 0..{n - 1}"
            )
        for _, supplier, fragment_id in placements:
            _check_placement(chunk_id, supplier, fragment_id)
        with self._transaction() as db:
            known = self._chunk(chunk_id, missing_ok=True)
            if known is None:
                db.execute(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, 0)",
                    (chunk_id, size, stored_size, k, n),
                )
            elif (known.size, known.stored_size, known.k, known.n) != (size, stored_size, k, n):
                raise ValueError(
                    f"chunk {chunk_id.hex()} is already stored as {known.k}-of-{known.n} with "
                    f"{known.stored_size}-byte fragments, not {k}-of-{n} with {stored_size}"
                )
            for index, supplier, fragment_id in placements:
                self._place(chunk_id, index, supplier, fragment_id)

    def chunk(self, chunk_id: bytes) -> ChunkRow:
        with self._lock:
            return self._chunk(chunk_id)

    def placements(self, chunk_id: bytes) -> list[Placement]:
        """The chunk's placements by fragment index; NotInCatalogue for an unknown chunk."""
        with self._lock:
            self._chunk(chunk_id)
            query = f"SELECT {_PLACEMENT} FROM placements WHERE chunk = ? ORDER BY fragment"
            return [Placement(**row) for row in self._rows(query, (chunk_id,))]

    def mark_placement(
        self, chunk_id: bytes, index: int, state: str, verified_at: float | None = None
    ) -> None:
        """Record an audit's verdict on one fragment; ``verified_at`` None keeps the last one."""
        if state not in PLACEMENT_STATES:
            raise ValueError(f"placement state {state!r}: expected one of {PLACEMENT_STATES}")
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE placements SET state = ?, verified_at = COALESCE(?, verified_at)"
                " WHERE chunk = ? AND fragment = ?",
                (state, verified_at, chunk_id, index),
            )
            if cursor.rowcount == 0:
                raise NotInCatalogue(f"chunk {chunk_id.hex()} has no fragment {index} placed")

    def move_placement(
        self, chunk_id: bytes, index: int, supplier: str, fragment_id: bytes
    ) -> None:
        """Fragment ``index`` of a known chunk now lies on ``supplier`` (rebuilt or re-sent)."""
        _check_placement(chunk_id, supplier, fragment_id)
        with self._transaction():
            if not 0 <= index < self._chunk(chunk_id).n:
                raise ValueError(f"chunk {chunk_id.hex()} has no fragment index {index}")
            self._place(chunk_id, index, supplier, fragment_id)

    def stored_bytes(self) -> dict[str, int]:
        """Bytes each supplier holds for us, by IDURL: one fragment per placement."""
        with self._lock:
            query = (
                "SELECT supplier, SUM(stored_size) AS size FROM placements"
                " JOIN chunks ON chunk = chunks.id GROUP BY supplier"
            )
            return {row["supplier"]: row["size"] for row in self._rows(query)}

    def unreferenced_chunks(self) -> list[ChunkRow]:
        """Chunks no version uses whose fragments still wait to be deleted on the suppliers."""
        with self._lock:
            return [
                ChunkRow(**row) for row in self._rows(f"SELECT {_CHUNK} FROM chunks WHERE refs = 0")
            ]

    def forget_chunks(self, chunk_ids: Iterable[bytes]) -> None:
        """Drop unreferenced chunks (and their placements) once their fragments are deleted;
        unknown ids are ignored, so a retried deletion is harmless."""
        chunk_ids = list(chunk_ids)
        with self._transaction() as db:
            for chunk_id in chunk_ids:
                known = self._chunk(chunk_id, missing_ok=True)
                if known is not None and known.refs:
                    raise ValueError(f"chunk {chunk_id.hex()} is used by {known.refs} versions")
                db.execute("DELETE FROM chunks WHERE id = ?", (chunk_id,))

    # Files ------------------------------------------------------------------------------------

    def add_version(
        self,
        snapshot: int,
        path: str,
        size: int,
        mtime_ns: int,
        mode: int,
        sha256: bytes,
        chunk_ids: Sequence[bytes],
    ) -> FileVersion:
        """Record a new version of ``path`` made of ``chunk_ids`` (known chunks, in order), in
        a running snapshot; each use of a chunk adds a reference to it."""
        if not (_text(path) and _COUNT(size) and _COUNT(mode) and _INT64(mtime_ns)):
            raise ValueError(
                f"{path!r}: expected a path and integers size, mode and mtime_ns, "
                f"not {size!r}, {mode!r}, {mtime_ns!r}"
            )
        if not _blob(SHA256_SIZE)(sha256):
            raise ValueError(f"{path}: the SHA-256 must be {SHA256_SIZE} bytes")
        with self._transaction() as db:
            self._running_snapshot(snapshot)
            chunked = sum(self._chunk(chunk_id).size for chunk_id in chunk_ids)
            if chunked != size:
                raise ValueError(f"{path}: {size} bytes, but its chunks hold {chunked}")
            created_at = self._clock()
            version = db.execute(
                "INSERT INTO files (path, snapshot, size, mtime_ns, mode, sha256, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (path, snapshot, size, mtime_ns, mode, sha256, created_at),
            ).lastrowid
            db.executemany(
                "INSERT INTO file_chunks VALUES (?, ?, ?)",
                [(version, seq, chunk_id) for seq, chunk_id in enumerate(chunk_ids)],
            )
            db.executemany(
                "UPDATE chunks SET refs = refs + ? WHERE id = ?",
                [(uses, chunk_id) for chunk_id, uses in Counter(chunk_ids).items()],
            )
        return FileVersion(
            version, path, snapshot, size, mtime_ns, mode, sha256, created_at, tuple(chunk_ids)
        )

    def list_files(self, prefix: str = "") -> list[FileSummary]:
        """The latest version of each path equal to ``prefix`` or under ``prefix/`` ("" = all),
        in path order, with its number of versions."""
        prefix = prefix.rstrip("/")
        where = f"WHERE {_UNDER}" if prefix else ""
        query = (
            f"SELECT {_VERSION}, versions FROM files JOIN (SELECT MAX(id) AS latest,"
            f" COUNT(*) AS versions FROM files {where} GROUP BY path) ON id = latest ORDER BY path"
        )
        with self._lock:
            return [_summary(row) for row in self._rows(query, {"path": prefix})]

    def versions(self, path: str) -> list[FileVersion]:
        """Every version of ``path``, newest first ([] for an unknown path)."""
        with self._lock:
            query = f"SELECT {_VERSION} FROM files WHERE path = ? ORDER BY id DESC"
            return [self._file_version(row) for row in self._rows(query, (path,))]

    def version(self, path: str, version: int | None = None) -> FileVersion:
        """Version ``version`` of ``path``, or its latest; NotInCatalogue when there is none."""
        with self._lock:
            query = f"SELECT {_VERSION} FROM files WHERE path = ?"
            if version is None:
                rows = self._rows(f"{query} ORDER BY id DESC LIMIT 1", (path,))
            else:
                rows = self._rows(f"{query} AND id = ?", (path, version))
            if not rows:
                raise NotInCatalogue(
                    f"{path}: not in the catalogue"
                    if version is None
                    else f"{path}: no version {version} in the catalogue"
                )
            return self._file_version(rows[0])

    def delete_path(self, path: str) -> list[ChunkRow]:
        """Forget every version of ``path`` and of everything under ``path/``; returns the
        chunks nobody uses any more (their fragments are to be deleted on the suppliers)."""
        path = path.rstrip("/")
        if not path:
            raise ValueError(
                "name the path to delete (the whole catalogue is never deleted at once)"
            )
        with self._transaction():
            released = self._drop_versions(f"SELECT id FROM files WHERE {_UNDER}", {"path": path})
            if released is None:
                raise NotInCatalogue(f"{path}: not in the catalogue")
            return released

    def prune(self, path: str, keep: int) -> list[ChunkRow]:
        """Keep the newest ``keep`` versions of ``path``; returns the chunks nobody uses any
        more, as :meth:`delete_path` does."""
        if type(keep) is not int or keep < 1:
            raise ValueError(f"keep {keep!r}: at least 1 version (delete_path removes a path)")
        with self._transaction():
            if not self._rows("SELECT 1 FROM files WHERE path = ? LIMIT 1", (path,)):
                raise NotInCatalogue(f"{path}: not in the catalogue")
            doomed = (
                "SELECT id FROM files WHERE path = :path AND id NOT IN"
                " (SELECT id FROM files WHERE path = :path ORDER BY id DESC LIMIT :keep)"
            )
            return self._drop_versions(doomed, {"path": path, "keep": keep}) or []

    # The whole file ---------------------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """A consistent copy of the whole catalogue as the bytes of an SQLite file."""
        with self._lock:
            copy = sqlite3.connect(":memory:")
            try:
                self._db.backup(copy)
                data = bytearray(copy.serialize())
            finally:
                copy.close()
        # The copy keeps the header's WAL flags (bytes 18 and 19), with which SQLite cannot open
        # it in memory: mark it a rollback-journal file, which every reader opens.
        data[18:20] = b"\x01\x01"
        return bytes(data)

    # Inside the lock --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one write transaction; the generation goes up if a row changed."""
        with self._lock:
            bumped = False
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                yield self._db
                if self._db.total_changes != before:
                    self._db.execute(
                        "UPDATE meta SET value = ? WHERE name = 'generation'",
                        (self._generation + 1,),
                    )
                    bumped = True
            if bumped:
                self._generation += 1

    def _rows(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """The rows of ``query``, every column checked by its name (see ``_COLUMN_CHECKS``)."""
        rows = self._db.execute(query, params).fetchall()
        for row in rows:
            for name, value in zip(row.keys(), row, strict=True):
                check = _COLUMN_CHECKS.get(name)
                if check is not None and not check(value):
                    raise DataFormatError(
                        f"{self.path}: a malformed {name} ({value!r:.80}) in the catalogue"
                    )
        return rows

    def _chunk(self, chunk_id: bytes, missing_ok: bool = False) -> ChunkRow | None:
        rows = self._rows(f"SELECT {_CHUNK} FROM chunks WHERE id = ?", (chunk_id,))
        if rows:
            return ChunkRow(**rows[0])
        if missing_ok:
            return None
        raise NotInCatalogue(f"chunk {bytes(chunk_id).hex()} is not in the catalogue")

    def _running_snapshot(self, snapshot: int) -> None:
        row = self._db.execute("SELECT state FROM snapshots WHERE id = ?", (snapshot,)).fetchone()
        if row is None:
            raise NotInCatalogue(f"snapshot {snapshot} is not in the catalogue")
        if row[0] != RUNNING:
            raise ValueError(f"snapshot {snapshot} has ended ({row[0]}); begin a new one")

    def _place(self, chunk_id: bytes, index: int, supplier: str, fragment_id: bytes) -> None:
        """Fragment ``index`` was just stored on ``supplier``; an unchanged placement stays."""
        self._db.execute(
            "INSERT INTO placements VALUES (?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (chunk, fragment) DO UPDATE SET supplier = excluded.supplier,"
            " fragment_id = excluded.fragment_id, state = excluded.state, verified_at = NULL"
            " WHERE (supplier, fragment_id, state)"
            " IS NOT (excluded.supplier, excluded.fragment_id, excluded.state)",
            (chunk_id, index, supplier, fragment_id, STORED),
        )

    def _drop_versions(self, doomed: str, params: dict[str, Any]) -> list[ChunkRow] | None:
        """Delete the versions ``doomed`` selects, releasing their chunk references; the chunks
        left unused, or None when it selected no version."""
        counts = self._db.execute(
            f"SELECT chunk, COUNT(*) FROM file_chunks WHERE file IN ({doomed}) GROUP BY chunk",
            params,
        ).fetchall()
        deleted = self._db.execute(f"DELETE FROM files WHERE id IN ({doomed})", params).rowcount
        if not deleted:
            return None
        released = []
        for chunk_id, uses in counts:
            self._db.execute("UPDATE chunks SET refs = refs - ? WHERE id = ?", (uses, chunk_id))
            row = self._chunk(chunk_id)
            if row.refs == 0:
                released.append(row)
        return released

    def _file_version(self, row: sqlite3.Row) -> FileVersion:
        query = "SELECT chunk AS id FROM file_chunks WHERE file = ? ORDER BY seq"
        chunks = self._rows(query, (row["version"],))
        return FileVersion(**row, chunk_ids=tuple(chunk["id"] for chunk in chunks))


def _check_chunk_id(chunk_id: bytes) -> None:
    if not _blob(CHUNK_ID_SIZE)(chunk_id):
        raise ValueError(f"a chunk id is {CHUNK_ID_SIZE} bytes, not {chunk_id!r:.80}")


def _check_placement(chunk_id: bytes, supplier: str, fragment_id: bytes) -> None:
    _check_chunk_id(chunk_id)
    if not _text(supplier) or not _blob(FRAGMENT_ID_SIZE)(fragment_id):
        raise ValueError(
            f"chunk {chunk_id.hex()}: a placement names a supplier and a "
            f"{FRAGMENT_ID_SIZE}-byte fragment id, not {supplier!r} and {fragment_id!r:.80}"
        )


def _summary(row: sqlite3.Row) -> FileSummary:
    fields = dict(row)
    versions = fields.pop("versions")
    return FileSummary(VersionInfo(**fields), versions)
