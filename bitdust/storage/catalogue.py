"""The customer's catalogue: what it backed up and where every fragment of it lies (DESIGN §10).

One versioned SQLite file (:mod:`bitdust.sqlite_file`) at ``<state>/storage/catalogue.sqlite3``.
A path has versions; a version lists its chunks in order; a chunk (stored once per account,
however many versions use it) counts its references and lists its N placements, fragment i on
the supplier hired at position i. A chunk whose references fall to 0 stays listed until its
fragments are deleted on the suppliers (:meth:`Catalogue.forget_chunks`): the catalogue must never
forget a fragment that still takes a supplier's space.

Every change is one transaction and, when it changed a row, bumps ``generation``: the next issue
stores each generation (encrypted, from :meth:`Catalogue.snapshot_bytes`) on the suppliers. Audit
bookkeeping (a supplier's health, challenges taken and made, a fragment verified again) is not
worth a new off-site copy and does not bump it; a placement's state or a supplier replaced does.

Audits (:mod:`bitdust.storage.audit`): each placement keeps the SHA-256 of its fragment and a few
challenges precomputed from the fragment's bytes while the customer held them; a challenge is
removed as it is taken, so none is ever asked twice. Placements are ``stored``, ``bad`` (failed an
audit) or ``missing`` (its supplier was replaced): only stored ones count towards a chunk. The
customer service calls in from the event loop and from worker threads: one lock keeps two
threads off the connection at once. Rows read back are data from a file: a malformed one raises
:class:`~bitdust.errors.DataFormatError` naming it, never a crash later.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitdust.errors import DataFormatError
from bitdust.sqlite_file import open_versioned
from bitdust.storage.interface import NotInCatalogue
from bitdust.storage.repair import SupplierHealth
from bitdust.storage.wire import ID_SIZE as FRAGMENT_ID_SIZE
from bitdust.storage.wire import MAX_NONCE, MIN_NONCE

CHUNK_ID_SIZE = 32  # a keyed hash of the chunk's plaintext
SHA256_SIZE = 32
MAX_FRAGMENTS = 64  # the largest N a customer hires
MAX_CHUNK = 16 * 1024 * 1024  # the chunker's largest chunk

STORED, BAD, MISSING = "stored", "bad", "missing"
PLACEMENT_STATES = (STORED, BAD, MISSING)
RUNNING, DONE, FAILED = "running", "done", "failed"
SNAPSHOT_STATES = (RUNNING, DONE, FAILED)


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
        "INSERT INTO meta VALUES ('generation', 0)",
        "CREATE TABLE suppliers (position INTEGER PRIMARY KEY, idurl TEXT NOT NULL UNIQUE,"
        " hired_at REAL NOT NULL, quota INTEGER NOT NULL, last_seen REAL, away_since REAL,"
        " audit_failures INTEGER NOT NULL DEFAULT 0, last_audit REAL,"
        ' "replace" INTEGER NOT NULL DEFAULT 0)',
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
        " state TEXT NOT NULL, verified_at REAL, digest BLOB, PRIMARY KEY (chunk, fragment))",
        # Audits and rebuilding go supplier by supplier.
        "CREATE INDEX placements_by_supplier ON placements (supplier)",
        "CREATE INDEX placements_by_fragment ON placements (fragment, state)",
        "CREATE TABLE challenges (chunk BLOB NOT NULL, fragment INTEGER NOT NULL,"
        " nonce BLOB NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,"
        " digest BLOB NOT NULL, FOREIGN KEY (chunk, fragment)"
        " REFERENCES placements (chunk, fragment) ON DELETE CASCADE)",
        "CREATE INDEX challenges_by_placement ON challenges (chunk, fragment)",
    ):
        db.execute(statement)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    # Every upload asks for the chunks nothing uses any more: without this index that scanned
    # every chunk (6 ms at 100,000), with it the few unreferenced ones (5 us).
    db.execute("CREATE INDEX chunks_unreferenced ON chunks (id) WHERE refs = 0")


# MIGRATIONS[n] upgrades a catalogue from version n to n + 1.
MIGRATIONS = (_migrate_0_to_1, _migrate_1_to_2)
SCHEMA_VERSION = len(MIGRATIONS)
WHAT = "catalogue"


@dataclass(frozen=True)
class SupplierRow:
    position: int
    idurl: str
    hired_at: float
    quota: int
    last_seen: float | None  # it last answered us then
    away_since: float | None  # it has not answered since then (None: it answers)
    audit_failures: int  # in a row
    last_audit: float | None
    replace: bool  # it must go, whatever the figures say


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
    digest: bytes | None = None  # the fragment's SHA-256, which checks it when fetched whole


@dataclass(frozen=True, kw_only=True)
class ChunkPlacement(Placement):
    """A placement with its chunk, as an audit samples it: what to ask for and how large."""

    chunk_id: bytes
    stored_size: int


@dataclass(frozen=True)
class Challenge:
    """One audit question made from a fragment's bytes while the customer still held them: the
    supplier must answer ``digest`` = SHA-256(nonce || fragment[offset:offset + length])."""

    nonce: bytes
    offset: int
    length: int
    digest: bytes


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


@dataclass(frozen=True)
class Deleted:
    """What forgetting a path did: how many files it listed, and the chunks nobody uses any
    more (their fragments are to be deleted on the suppliers)."""

    files: int
    released: list[ChunkRow]


# Checks of the columns read back, by kind (rows are data from a file).
def _blob(size: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, bytes) and len(value) == size


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _time(value: Any) -> bool:
    return type(value) in (int, float)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _maybe(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_COUNT = _int_in(0, 2**63 - 1)
_INT64 = _int_in(-(2**63), 2**63 - 1)
_COLUMN_CHECKS: dict[str, Callable[[Any], bool]] = {
    "position": _int_in(0, MAX_FRAGMENTS - 1),
    "idurl": _text,
    "supplier": _text,
    "path": _text,
    "hired_at": _time,
    "created_at": _time,
    "verified_at": _maybe(_time),
    "last_seen": _maybe(_time),
    "away_since": _maybe(_time),
    "last_audit": _maybe(_time),
    "audit_failures": _COUNT,
    "replace": lambda value: value in (0, 1),
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
    "chunk_id": _blob(CHUNK_ID_SIZE),
    "fragment_id": _blob(FRAGMENT_ID_SIZE),
    "sha256": _blob(SHA256_SIZE),
    "digest": _maybe(_blob(SHA256_SIZE)),  # NOT NULL in challenges
    "nonce": lambda value: isinstance(value, bytes) and MIN_NONCE <= len(value) <= MAX_NONCE,
    "offset": _COUNT,
    "length": _int_in(1, 2**63 - 1),
    "state": lambda value: value in PLACEMENT_STATES,
}

_HEALTH = ("last_seen", "away_since", "audit_failures", "last_audit", "replace")
_NEW_HEALTH = (None, None, 0, None, 0)  # a supplier just hired
_SUPPLIER = (
    'position, idurl, hired_at, quota, last_seen, away_since, audit_failures, last_audit, "replace"'
)
_CHUNK = "id, size, stored_size, k, n, refs"
_PLACEMENT = 'fragment AS "index", supplier, fragment_id, state, verified_at, digest'
_CHALLENGE = "nonce, offset, length, digest"
_VERSION = "id AS version, path, snapshot, size, mtime_ns, mode, sha256, created_at"
#: ``path`` or under ``path/`` ('0' follows '/'), bounded on both sides so that SQLite reads
#: only that range of the index on paths
_UNDER = "(path >= :path AND path < :path || '0' AND (path = :path OR path >= :path || '/'))"


class Catalogue:
    """The catalogue file of one customer; every public method is thread-safe."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._state_changed = False  # set inside a transaction that is not counted row by row
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

    def advance_generation(self, past: int) -> None:
        """Take a generation above ``past`` unless it is there already: the next copy stored
        off-site must be newer than every copy there, also when this catalogue is older than
        they are."""
        with self._lock:
            if self._generation > past:
                return
            with self._db:
                self._write_generation(past + 1)
            self._generation = past + 1

    # Suppliers --------------------------------------------------------------------------------

    def set_suppliers(self, idurls: Sequence[str], quota: int) -> None:
        """Hire ``idurls`` at positions 0..N-1 in place of the current list; a supplier already
        hired keeps its ``hired_at`` and its health record."""
        if len(set(idurls)) != len(idurls) or not all(map(_text, idurls)):
            raise ValueError(f"suppliers {list(idurls)}: expected distinct, non-empty IDURLs")
        if len(idurls) > MAX_FRAGMENTS or not _COUNT(quota):
            raise ValueError(f"at most {MAX_FRAGMENTS} suppliers and a quota >= 0, not {quota!r}")
        with self._transaction() as db:
            current = self._supplier_rows()
            if [(row["idurl"], row["quota"]) for row in current] == [(i, quota) for i in idurls]:
                return
            hired = {row["idurl"]: row for row in current}
            now = self._clock()
            rows = []
            for position, idurl in enumerate(idurls):
                kept = hired.get(idurl)
                if kept is None:
                    rows.append((position, idurl, now, quota, *_NEW_HEALTH))
                else:
                    health = (kept[name] for name in _HEALTH)
                    rows.append((position, idurl, kept["hired_at"], quota, *health))
            db.execute("DELETE FROM suppliers")
            db.executemany(
                f"INSERT INTO suppliers ({_SUPPLIER}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def suppliers(self) -> list[SupplierRow]:
        with self._lock:
            return [_supplier(row) for row in self._supplier_rows()]

    def replace_supplier(self, position: int, idurl: str, quota: int) -> None:
        """Hire ``idurl`` at ``position`` in place of the supplier there, with a fresh health
        record; every fragment at that index becomes ``missing`` (to be rebuilt onto it) and its
        challenges, which only the old supplier could answer, are dropped."""
        if not _text(idurl) or not _COUNT(quota):
            raise ValueError(f"expected an IDURL and a quota >= 0, not {idurl!r} and {quota!r}")
        with self._transaction() as db:
            hired = {row["idurl"]: row["position"] for row in self._supplier_rows()}
            if position not in hired.values():
                raise NotInCatalogue(f"no supplier is hired at position {position}")
            if hired.get(idurl, position) != position:
                raise ValueError(f"{idurl} is already hired at position {hired[idurl]}")
            db.execute(
                "UPDATE suppliers SET idurl = ?, hired_at = ?, quota = ?, last_seen = ?,"
                ' away_since = ?, audit_failures = ?, last_audit = ?, "replace" = ?'
                " WHERE position = ?",
                (idurl, self._clock(), quota, *_NEW_HEALTH, position),
            )
            db.execute(
                "UPDATE placements SET state = ? WHERE fragment = ? AND state != ?",
                (MISSING, position, MISSING),
            )
            db.execute("DELETE FROM challenges WHERE fragment = ?", (position,))

    # Supplier health (audit bookkeeping: no new generation) -----------------------------------

    def record_contact(self, position: int, ok: bool, now: float) -> None:
        """The supplier at ``position`` answered (``ok``) or could not be reached at ``now``;
        it counts as away from the first failed contact until it answers again."""
        if ok:
            self._update_health(position, "last_seen = ?, away_since = NULL", now)
        else:
            self._update_health(position, "away_since = COALESCE(away_since, ?)", now)

    def record_audit(self, position: int, passed: bool, now: float) -> None:
        """An audit of the supplier at ``position`` ended at ``now``: a pass clears its run of
        failures, a failure adds one."""
        failures = "0" if passed else "audit_failures + 1"
        self._update_health(position, f"audit_failures = {failures}, last_audit = ?", now)

    def mark_for_replacement(self, position: int) -> None:
        """The supplier at ``position`` must be replaced (it left us, or the user said so)."""
        self._update_health(position, '"replace" = 1')

    def supplier_health(self) -> list[SupplierHealth]:
        """Every hired supplier's record, by position, as the repair policy reads it."""
        return [
            SupplierHealth(
                row.position, row.last_seen, row.away_since, row.audit_failures, row.replace
            )
            for row in self.suppliers()
        ]

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
        digests: Sequence[bytes] | None = None,
        challenges: Mapping[int, Sequence[Challenge]] | None = None,
    ) -> None:
        """Record a chunk whose fragments were just stored, as (fragment index, supplier IDURL,
        fragment id); its references start at 0. For a known chunk, the given placements
        replace those of the same index (a fragment sent again), the others stay.

        ``digests`` are the fragments' SHA-256, in the order of ``placements``; ``challenges``
        are audit challenges by fragment index, for fragments placed in this call."""
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
        if digests is not None and (
            len(digests) != len(placements) or not all(map(_blob(SHA256_SIZE), digests))
        ):
            raise ValueError(
                f"chunk {chunk_id.hex()}: expected one {SHA256_SIZE}-byte digest per placement"
            )
        challenges = challenges or {}
        if not set(challenges) <= set(indexes):
            raise ValueError(
                f"chunk {chunk_id.hex()}: challenges for fragments {sorted(challenges)} "
                f"not placed here ({indexes})"
            )
        for index, made in challenges.items():
            _check_challenges(chunk_id, index, stored_size, made)
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
            known_digests = digests or [None] * len(placements)
            for (index, supplier, fragment_id), digest in zip(
                placements, known_digests, strict=True
            ):
                self._place(
                    chunk_id, index, supplier, fragment_id, digest, challenges.get(index, ())
                )

    def chunk(self, chunk_id: bytes) -> ChunkRow:
        with self._lock:
            return self._chunk(chunk_id)

    def knows_chunk(self, chunk_id: bytes) -> bool:
        """The chunk was stored once, whether or not all its fragments still are."""
        with self._lock:
            return self._chunk(chunk_id, missing_ok=True) is not None

    def placements(self, chunk_id: bytes) -> list[Placement]:
        """The chunk's placements by fragment index; NotInCatalogue for an unknown chunk."""
        with self._lock:
            self._chunk(chunk_id)
            query = f"SELECT {_PLACEMENT} FROM placements WHERE chunk = ? ORDER BY fragment"
            return [Placement(**row) for row in self._rows(query, (chunk_id,))]

    def mark_placement(
        self,
        chunk_id: bytes,
        index: int,
        state: str,
        verified_at: float | None = None,
        if_stored_on: str | None = None,
    ) -> bool:
        """Record an audit's verdict on one fragment; ``verified_at`` None keeps the last one.
        With ``if_stored_on``, only while the fragment is still stored on that supplier (an
        audit that raced a move or a replacement says nothing of the new placement): False
        when the verdict was dropped. A new state bumps the generation, a new time alone not."""
        if state not in PLACEMENT_STATES:
            raise ValueError(f"placement state {state!r}: expected one of {PLACEMENT_STATES}")
        with self._transaction(counted=False) as db:
            row = db.execute(
                "SELECT supplier, state FROM placements WHERE chunk = ? AND fragment = ?",
                (chunk_id, index),
            ).fetchone()
            if row is None:
                raise NotInCatalogue(f"chunk {chunk_id.hex()} has no fragment {index} placed")
            if if_stored_on is not None and tuple(row) != (if_stored_on, STORED):
                return False
            db.execute(
                "UPDATE placements SET state = ?, verified_at = COALESCE(?, verified_at)"
                " WHERE chunk = ? AND fragment = ?",
                (state, verified_at, chunk_id, index),
            )
            self._state_changed = row["state"] != state
        return True

    def move_placement(
        self,
        chunk_id: bytes,
        index: int,
        supplier: str,
        fragment_id: bytes,
        digest: bytes | None = None,
        challenges: Sequence[Challenge] = (),
    ) -> None:
        """Fragment ``index`` of a known chunk now lies on ``supplier`` (rebuilt or re-sent),
        with the fragment's SHA-256 and audit challenges made from its bytes when given."""
        _check_placement(chunk_id, supplier, fragment_id)
        if digest is not None and not _blob(SHA256_SIZE)(digest):
            raise ValueError(f"chunk {chunk_id.hex()}: a digest is {SHA256_SIZE} bytes")
        with self._transaction():
            chunk = self._chunk(chunk_id)
            if not 0 <= index < chunk.n:
                raise ValueError(f"chunk {chunk_id.hex()} has no fragment index {index}")
            _check_challenges(chunk_id, index, chunk.stored_size, challenges)
            self._place(chunk_id, index, supplier, fragment_id, digest, challenges)

    def sample_placements(self, position: int, count: int) -> list[ChunkPlacement]:
        """Up to ``count`` stored placements, at random, of fragment index ``position`` on the
        supplier hired there: what one audit of it checks."""
        if not _COUNT(count):
            raise ValueError(f"a sample of {count!r} placements: expected a count >= 0")
        query = (
            f"SELECT {_PLACEMENT}, chunk AS chunk_id, stored_size FROM placements"
            " JOIN chunks ON chunks.id = chunk"
            " JOIN suppliers ON suppliers.position = fragment AND suppliers.idurl = supplier"
            " WHERE fragment = ? AND state = ? ORDER BY random() LIMIT ?"
        )
        with self._lock:
            return [ChunkPlacement(**row) for row in self._rows(query, (position, STORED, count))]

    def chunks_to_repair(self, threshold: int, bad_positions: set[int]) -> list[bytes]:
        """Ids of the chunks in use that have at most ``threshold`` healthy fragments (stored,
        and not at one of ``bad_positions``, whose suppliers are being replaced), fewest
        first: the order to rebuild them in (see :mod:`bitdust.storage.repair`)."""
        if not _COUNT(threshold) or not all(map(_int_in(0, MAX_FRAGMENTS - 1), bad_positions)):
            raise ValueError(
                f"threshold {threshold!r} and positions {sorted(bad_positions)!r}: expected "
                f"counts, positions below {MAX_FRAGMENTS}"
            )
        query = (
            "SELECT id, (SELECT COUNT(*) FROM placements WHERE chunk = chunks.id AND state = ?"
            " AND fragment NOT IN (SELECT value FROM json_each(?))) AS healthy"
            " FROM chunks WHERE refs > 0 AND healthy <= ? ORDER BY healthy, id"
        )
        params = (STORED, json.dumps(sorted(bad_positions)), threshold)
        with self._lock:
            return [row["id"] for row in self._rows(query, params)]

    # Challenges (audit bookkeeping: no new generation) ----------------------------------------

    def add_challenges(self, chunk_id: bytes, index: int, challenges: Sequence[Challenge]) -> None:
        """Keep fresh challenges for fragment ``index``, made from bytes fetched and checked
        against its digest."""
        with self._transaction(counted=False) as db:
            chunk = self._chunk(chunk_id)
            placed = db.execute(
                "SELECT 1 FROM placements WHERE chunk = ? AND fragment = ?", (chunk_id, index)
            ).fetchone()
            if placed is None:
                raise NotInCatalogue(f"chunk {chunk_id.hex()} has no fragment {index} placed")
            _check_challenges(chunk_id, index, chunk.stored_size, challenges)
            self._add_challenges(chunk_id, index, challenges)

    def take_challenge(self, chunk_id: bytes, index: int) -> Challenge | None:
        """One of fragment ``index``'s challenges, removed as it is taken so that it is never
        asked twice; None when none is left."""
        query = (
            f"DELETE FROM challenges WHERE rowid = (SELECT rowid FROM challenges"
            f" WHERE chunk = ? AND fragment = ? LIMIT 1) RETURNING {_CHALLENGE}"
        )
        with self._transaction(counted=False):
            rows = self._rows(query, (chunk_id, index))
        return Challenge(**rows[0]) if rows else None

    def stored_bytes(self) -> dict[str, int]:
        """Bytes each supplier holds for us, by IDURL: one fragment per placement."""
        with self._lock:
            # chunks first, then their placements by primary key: at 100,000 chunks 0.36 s,
            # where SQLite's own choice (placements by supplier, a chunk looked up for each)
            # took 0.81 s
            query = (
                "SELECT supplier, SUM(stored_size) AS size FROM chunks"
                " CROSS JOIN placements ON chunk = chunks.id GROUP BY supplier"
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

    def list_files(self, prefix: str = "", after: str = "", limit: int = -1) -> list[FileSummary]:
        """The latest version of each path equal to ``prefix`` or under ``prefix/`` ("" = all),
        in path order, with its number of versions: the first ``limit`` (all when negative)
        whose path sorts after ``after``, so that a long listing is read a page at a time, each
        page found through the index on paths rather than by skipping the ones before it."""
        prefix = prefix.rstrip("/")
        where = f"path > :after AND {_UNDER}" if prefix else "path > :after"
        query = (
            f"SELECT {_VERSION}, versions FROM files JOIN (SELECT MAX(id) AS latest,"
            f" COUNT(*) AS versions FROM files WHERE {where} GROUP BY path ORDER BY path"
            " LIMIT :limit) ON id = latest ORDER BY path"
        )
        with self._lock:
            rows = self._rows(query, {"path": prefix, "after": after, "limit": limit})
            return [_summary(row) for row in rows]

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

    def unchanged(self, files: list[tuple[str, int, int, int]]) -> list[FileVersion | None]:
        """For each of ``files`` (path, size, mode, mtime in ns), its newest version when that
        has the same size, mode and mtime, else None: a backup skips those files without
        reading them, as rsync and restic do."""
        found: list[FileVersion | None] = []
        with self._lock:
            for path, size, mode, mtime_ns in files:
                rows = self._rows(
                    f"SELECT {_VERSION} FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", (path,)
                )
                same = rows and (rows[0]["size"], rows[0]["mode"], rows[0]["mtime_ns"]) == (
                    size,
                    mode,
                    mtime_ns,
                )
                found.append(self._file_version(rows[0]) if same else None)
        return found

    def delete_path(self, path: str) -> Deleted:
        """Forget every version of ``path`` and of everything under ``path/``, in one
        transaction (NotInCatalogue when there is none)."""
        path = path.rstrip("/")
        if not path:
            raise ValueError(
                "name the path to delete (the whole catalogue is never deleted at once)"
            )
        with self._transaction():
            query = f"SELECT COUNT(DISTINCT path) FROM files WHERE {_UNDER}"
            files = self._db.execute(query, {"path": path}).fetchone()[0]
            released = self._drop_versions(f"SELECT id FROM files WHERE {_UNDER}", {"path": path})
            if released is None:
                raise NotInCatalogue(f"{path}: not in the catalogue")
            return Deleted(files, released)

    def prune(self, path: str, keep: int) -> list[ChunkRow]:
        """Keep the newest ``keep`` versions of ``path``; returns the chunks nobody uses any
        more (their fragments are to be deleted on the suppliers)."""
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
    def _transaction(self, counted: bool = True) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one write transaction; the generation goes up if a row changed,
        or, when not ``counted`` (audit bookkeeping), if the body set ``_state_changed``."""
        with self._lock:
            bumped = False
            self._state_changed = False
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                yield self._db
                if self._state_changed or (counted and self._db.total_changes != before):
                    self._write_generation(self._generation + 1)
                    bumped = True
            if bumped:
                self._generation += 1

    def _write_generation(self, value: int) -> None:
        """Store ``value`` as the generation, inside the caller's transaction."""
        self._db.execute("UPDATE meta SET value = ? WHERE name = 'generation'", (value,))

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

    def _place(
        self,
        chunk_id: bytes,
        index: int,
        supplier: str,
        fragment_id: bytes,
        digest: bytes | None,
        challenges: Sequence[Challenge],
    ) -> None:
        """Fragment ``index`` was just stored on ``supplier``; an unchanged placement stays, a
        changed one loses its verification time and the challenges of the bytes it had."""
        changed = self._db.execute(
            "INSERT INTO placements (chunk, fragment, supplier, fragment_id, state, digest)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (chunk, fragment) DO UPDATE SET supplier = excluded.supplier,"
            " fragment_id = excluded.fragment_id, state = excluded.state,"
            " digest = excluded.digest, verified_at = NULL"
            " WHERE (supplier, fragment_id, state, digest)"
            " IS NOT (excluded.supplier, excluded.fragment_id, excluded.state, excluded.digest)",
            (chunk_id, index, supplier, fragment_id, STORED, digest),
        ).rowcount
        if changed:
            self._db.execute(
                "DELETE FROM challenges WHERE chunk = ? AND fragment = ?", (chunk_id, index)
            )
        self._add_challenges(chunk_id, index, challenges)

    def _add_challenges(self, chunk_id: bytes, index: int, challenges: Sequence[Challenge]) -> None:
        self._db.executemany(
            f"INSERT INTO challenges (chunk, fragment, {_CHALLENGE}) VALUES (?, ?, ?, ?, ?, ?)",
            [(chunk_id, index, c.nonce, c.offset, c.length, c.digest) for c in challenges],
        )

    def _supplier_rows(self) -> list[sqlite3.Row]:
        return self._rows(f"SELECT {_SUPPLIER} FROM suppliers ORDER BY position")

    def _update_health(self, position: int, assignments: str, now: float | None = None) -> None:
        """Set ``assignments`` (SQL, ``?`` for ``now`` when it has one) on one supplier's
        health record, without a new generation."""
        if now is not None and not _time(now):
            raise ValueError(f"a time is a number of seconds, not {now!r}")
        params = (position,) if now is None else (now, position)
        with self._transaction(counted=False) as db:
            updated = db.execute(
                f"UPDATE suppliers SET {assignments} WHERE position = ?", params
            ).rowcount
            if not updated:
                raise NotInCatalogue(f"no supplier is hired at position {position}")

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


def _check_challenges(
    chunk_id: bytes, index: int, stored_size: int, challenges: Sequence[Challenge]
) -> None:
    """Challenges of fragment ``index``: well formed, each range inside the fragment."""
    for challenge in challenges:
        if not (
            isinstance(challenge, Challenge)
            and _COLUMN_CHECKS["nonce"](challenge.nonce)
            and _COUNT(challenge.offset)
            and _COLUMN_CHECKS["length"](challenge.length)
            and challenge.offset + challenge.length <= stored_size
            and _blob(SHA256_SIZE)(challenge.digest)
        ):
            raise ValueError(
                f"chunk {chunk_id.hex()} fragment {index}: a malformed challenge, or one outside "
                f"the {stored_size}-byte fragment: {challenge!r:.200}"
            )


def _check_placement(chunk_id: bytes, supplier: str, fragment_id: bytes) -> None:
    _check_chunk_id(chunk_id)
    if not _text(supplier) or not _blob(FRAGMENT_ID_SIZE)(fragment_id):
        raise ValueError(
            f"chunk {chunk_id.hex()}: a placement names a supplier and a "
            f"{FRAGMENT_ID_SIZE}-byte fragment id, not {supplier!r} and {fragment_id!r:.80}"
        )


def _supplier(row: sqlite3.Row) -> SupplierRow:
    fields = dict(row)
    return SupplierRow(**{**fields, "replace": bool(fields["replace"])})


def _summary(row: sqlite3.Row) -> FileSummary:
    fields = dict(row)
    versions = fields.pop("versions")
    return FileSummary(VersionInfo(**fields), versions)
