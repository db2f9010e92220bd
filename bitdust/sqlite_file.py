"""SQLite files the node keeps (the DHT's state, the catalogue, a supplier's ledger): created
0600, WAL, versioned by ``PRAGMA user_version`` and brought forward one migration at a time.

A file of a newer version than this program knows is refused before anything writes to it, so
it stays byte for byte (WAL mode alone would rewrite its header) and the process exits with the
status systemd does not restart on (:class:`~bitdust.errors.DataFormatError`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from bitdust.errors import DataFormatError

#: ``migrations[n]`` upgrades a file from version n to n + 1; its length is the current version.
Migrations = Sequence[Callable[[sqlite3.Connection], None]]


def check_version(db: sqlite3.Connection, migrations: Migrations, what: str) -> int:
    """The file's schema version; DataFormatError when it is newer than ``migrations`` reach."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise DataFormatError(
            f"{what}: schema version {version} is newer than this program understands "
            f"({len(migrations)}); refusing to touch it (upgrade bitdust, or move the file away)"
        )
    return version


def migrate(db: sqlite3.Connection, migrations: Migrations, what: str) -> int:
    """Bring the schema to the newest version, one transaction per step; returns it."""
    version = check_version(db, migrations, what)
    while version < len(migrations):
        with db:
            db.execute("BEGIN IMMEDIATE")
            migrations[version](db)
            version += 1
            db.execute(f"PRAGMA user_version = {version}")
    return version


def open_versioned(
    path: str | os.PathLike[str], migrations: Migrations, what: str
) -> sqlite3.Connection:
    """Open (creating 0600 when missing) and migrate the SQLite file at ``path``; ``what``
    names it in errors. Autocommit mode: callers group writes with ``BEGIN``. DataFormatError
    for a newer or unreadable file."""
    name = str(path)
    if name != ":memory:":
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(name, os.O_CREAT | os.O_RDWR, 0o600))
    try:
        db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        try:
            check_version(db, migrations, f"{name} ({what})")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, migrations, f"{name} ({what})")
        except BaseException:
            db.close()
            raise
    except sqlite3.DatabaseError as exc:
        raise DataFormatError(f"{name}: not a usable {what} ({exc})") from None
    return db
