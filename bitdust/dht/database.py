"""SQLite persistence of one DHT node: its id, its Ed25519 key, records and routing table.

Versioned and migrated as every kept SQLite file (:mod:`bitdust.sqlite_file`); a newer version is
refused untouched. Writes from the core are queued and committed together by ``flush`` (one
transaction), which the asyncio shell calls shortly after a change and on close: the core never
waits on the disk while it handles a datagram. Rows read back are outside input: unparsable ones
are deleted, and the caller checks the rest again. Holds a private key: the file is created 0600.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable

import msgpack

from bitdust.dht.persistence import Table
from bitdust.dht.records import MalformedRecord, Record, record_from_map
from bitdust.dht.schemes import Ed25519Signer
from bitdust.dht.wire import ID_SIZE, Contact, valid_host
from bitdust.sqlite_file import open_versioned


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    for statement in (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "CREATE TABLE records (key BLOB NOT NULL, public_key BLOB NOT NULL, data BLOB NOT NULL,"
        " origin_ip TEXT NOT NULL, PRIMARY KEY (key, public_key))",
        "CREATE TABLE published (key BLOB NOT NULL, public_key BLOB NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (key, public_key))",
        "CREATE TABLE contacts (node_id BLOB PRIMARY KEY, host TEXT NOT NULL,"
        " port INTEGER NOT NULL)",
    ):
        db.execute(statement)


# MIGRATIONS[n] upgrades a database from version n to n + 1.
MIGRATIONS = (_migrate_0_to_1,)
SCHEMA_VERSION = len(MIGRATIONS)
WHAT = "DHT database"


# A queued row change: the encoded record and its origin, or None for a deletion.
_Change = tuple[bytes, str] | None


class Database:
    """The SQLite file of one node; implements ``persistence.Persistence``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._changes: dict[tuple[Table, bytes, bytes], _Change] = {}
        self._contacts: list[Contact] | None = None
        self._db = open_versioned(self.path, MIGRATIONS, WHAT)

    @property
    def dirty(self) -> bool:
        """Changes are queued that ``flush`` has not written yet."""
        return bool(self._changes) or self._contacts is not None

    def flush(self) -> None:
        """Write every queued change in one transaction."""
        if not self.dirty:
            return
        changes, self._changes = self._changes, {}
        contacts, self._contacts = self._contacts, None
        with self._db:
            self._db.execute("BEGIN")
            for (table, key, public_key), change in changes.items():
                if change is None:
                    self._db.execute(
                        f"DELETE FROM {table.value} WHERE key = ? AND public_key = ?",
                        (key, public_key),
                    )
                elif table is Table.HELD:
                    self._db.execute(
                        "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                        (key, public_key, *change),
                    )
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO published VALUES (?, ?, ?)",
                        (key, public_key, change[0]),
                    )
            if contacts is not None:
                self._db.execute("DELETE FROM contacts")
                self._db.executemany(
                    "INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)",
                    [(c.node_id, c.host, c.port) for c in contacts],
                )

    def close(self) -> None:
        self.flush()
        self._db.close()

    def get_meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def node_id(self) -> bytes:
        """This node's random 160-bit id, made on first use and kept across restarts."""
        node_id = self.get_meta("node_id")
        if node_id is None or len(node_id) != ID_SIZE:
            node_id = os.urandom(ID_SIZE)
            self.set_meta("node_id", node_id)
        return node_id

    def signer(self) -> Ed25519Signer:
        """The node's own Ed25519 record-signing key, made on first use."""
        raw = self.get_meta("ed25519_key")
        if raw is not None and len(raw) == 32:
            return Ed25519Signer.from_private_bytes(raw)
        signer = Ed25519Signer.generate()
        self.set_meta("ed25519_key", signer.private_bytes())
        return signer

    # Persistence ------------------------------------------------------------------------------

    def put_record(self, table: Table, record: Record, origin_ip: str = "") -> None:
        data = msgpack.packb(record.to_map(), use_bin_type=True)
        self._changes[(table, record.key, record.public_key)] = (data, origin_ip)

    def delete_record(self, table: Table, key: bytes, public_key: bytes) -> None:
        self._changes[(table, key, public_key)] = None

    def load_records(self, table: Table) -> list[tuple[Record, str]]:
        """Stored rows that still parse; unparsable rows are deleted, never returned."""
        self.flush()
        origin = "origin_ip" if table is Table.HELD else "''"
        out: list[tuple[Record, str]] = []
        query = f"SELECT key, public_key, CAST(data AS BLOB), {origin} FROM {table.value}"
        # Row by row, not fetchall(): a full store read at once would sit in memory twice.
        for key, public_key, data, origin_ip in self._db.execute(query):
            try:
                record = record_from_map(msgpack.unpackb(data, raw=False))
            except (MalformedRecord, ValueError, TypeError, msgpack.UnpackException):
                self.delete_record(table, key, public_key)
                continue
            out.append((record, origin_ip))
        return out

    def save_contacts(self, contacts: Iterable[Contact]) -> None:
        self._contacts = list(contacts)

    def load_contacts(self) -> list[Contact]:
        self.flush()
        out = []
        for node_id, host, port in self._db.execute("SELECT node_id, host, port FROM contacts"):
            if (
                isinstance(node_id, bytes)
                and len(node_id) == ID_SIZE
                and valid_host(host)
                and isinstance(port, int)
                and 1 <= port <= 65535
            ):
                out.append(Contact(node_id, host, port))
        return out
