"""Where a DHT node keeps what it must not forget: records, its routing table and its own id.

``RecordStore`` holds records in memory and enforces the storage policy (one record per key and
signer, newer replaces older, bounded per node, per key, per signer and per source IP). It writes
through to an optional ``Database`` (SQLite, WAL, versioned by ``PRAGMA user_version`` with
forward migrations); without one it is the purely in-memory variant the simulator uses. Records read
back from disk are validated again: the file is outside input too.
"""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgpack

from bitdust.dht.records import MalformedRecord, Record, RecordChecker, record_from_map
from bitdust.dht.refusals import Refusal
from bitdust.dht.schemes import Ed25519Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.wire import ID_SIZE, Contact, valid_host

SCHEMA_VERSION = 1


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
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1]


class DatabaseError(RuntimeError):
    """The DHT database cannot be used as it is (newer schema, unreadable file)."""


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``, one transaction per step; returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"DHT database schema version {version} is newer than this program "
            f"understands ({SCHEMA_VERSION}); refusing to touch it"
        )
    while version < SCHEMA_VERSION:
        with db:
            db.execute("BEGIN IMMEDIATE")
            MIGRATIONS[version](db)
            version += 1
            db.execute(f"PRAGMA user_version = {version}")
    return version


class Database:
    """SQLite persistence of one DHT node. Holds a private key: the file is created 0600."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{self.path}: not a usable DHT database ({exc})") from None

    def close(self) -> None:
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

    def put_record(self, table: str, record: Record, origin_ip: str = "") -> None:
        data = msgpack.packb(record.to_map(), use_bin_type=True)
        if table == "records":
            self._db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                (record.key, record.public_key, data, origin_ip),
            )
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO published VALUES (?, ?, ?)",
                (record.key, record.public_key, data),
            )

    def delete_record(self, table: str, key: bytes, public_key: bytes) -> None:
        assert table in ("records", "published")
        self._db.execute(f"DELETE FROM {table} WHERE key = ? AND public_key = ?", (key, public_key))

    def load_records(self, table: str) -> list[tuple[Record, str]]:
        """Stored rows that still parse; unparsable rows are deleted, never returned."""
        assert table in ("records", "published")
        origin = "origin_ip" if table == "records" else "''"
        out: list[tuple[Record, str]] = []
        query = f"SELECT key, public_key, CAST(data AS BLOB), {origin} FROM {table}"
        rows = self._db.execute(query).fetchall()
        for key, public_key, data, origin_ip in rows:
            try:
                record = record_from_map(msgpack.unpackb(data, raw=False))
            except (MalformedRecord, ValueError, TypeError, msgpack.UnpackException):
                self.delete_record(table, key, public_key)
                continue
            out.append((record, origin_ip))
        return out

    def save_contacts(self, contacts: Iterable[Contact]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM contacts")
            self._db.executemany(
                "INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)",
                [(c.node_id, c.host, c.port) for c in contacts],
            )

    def load_contacts(self) -> list[Contact]:
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


@dataclass(slots=True)
class Held:
    """A record this node holds for the network, with who sent it and when it was last stored."""

    record: Record
    origin_ip: str
    refreshed: float


class RecordStore:
    """Records held and published by one node, under the per-node and per-origin limits."""

    def __init__(self, settings: DHTSettings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db
        self._held: dict[bytes, dict[bytes, Held]] = {}
        self._published: dict[tuple[bytes, bytes], Record] = {}
        self.total_bytes = 0
        self._count = 0
        self._by_signer: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
        self._by_ip: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def __len__(self) -> int:
        return self._count

    def load(self, checker: RecordChecker, wall_now: float, now: float) -> int:
        """Read the database back, keeping only records that are still valid; returns how many."""
        if self.db is None:
            return 0
        for table in ("records", "published"):
            for record, origin_ip in self.db.load_records(table):
                reason = checker.check(record, wall_now)
                if reason is not None:
                    self.db.delete_record(table, record.key, record.public_key)
                elif table == "published":
                    self._published[(record.key, record.public_key)] = record
                elif self._admit(record, origin_ip, now) is not None:
                    self.db.delete_record(table, record.key, record.public_key)
        return self._count + len(self._published)

    def put(self, record: Record, origin_ip: str, now: float) -> Refusal | None:
        """Hold a record whose signature and times were already checked; None or a refusal."""
        reason = self._admit(record, origin_ip, now)
        if reason is None and self.db is not None:
            self.db.put_record("records", record, origin_ip)
        return reason

    def _admit(self, record: Record, origin_ip: str, now: float) -> Refusal | None:
        s = self.settings
        per_key = self._held.get(record.key, {})
        old = per_key.get(record.public_key)
        if old is not None:
            if record.created < old.record.created:
                return Refusal.OLDER
            if record.created == old.record.created:
                if record.signature != old.record.signature:
                    return Refusal.CONFLICT
                old.refreshed = now
                return None
        elif len(per_key) >= s.max_records_per_key:
            return Refusal.KEY_FULL
        signer = self._by_signer[record.public_key]
        ip = self._by_ip[origin_ip]
        old_size = old.record.size if old else 0
        same_ip = old is not None and old.origin_ip == origin_ip
        fresh = 0 if old else 1
        ip_fresh = 0 if same_ip else 1
        ip_old = old_size if same_ip else 0
        if self._count + fresh > s.max_records:
            return Refusal.STORE_FULL
        if self.total_bytes - old_size + record.size > s.max_bytes:
            return Refusal.STORE_FULL
        if signer[0] + fresh > s.max_records_per_signer:
            return Refusal.SIGNER_RECORDS
        if signer[1] - old_size + record.size > s.max_bytes_per_signer:
            return Refusal.SIGNER_BYTES
        if ip[0] + ip_fresh > s.max_records_per_ip:
            return Refusal.ADDRESS_RECORDS
        if ip[1] - ip_old + record.size > s.max_bytes_per_ip:
            return Refusal.ADDRESS_BYTES
        if old is not None:
            self._forget(old)
        self._account(record, origin_ip, +1)
        self._held.setdefault(record.key, {})[record.public_key] = Held(record, origin_ip, now)
        return None

    def _account(self, record: Record, origin_ip: str, sign: int) -> None:
        self._count += sign
        self.total_bytes += sign * record.size
        for bucket, name in ((self._by_signer, record.public_key), (self._by_ip, origin_ip)):
            entry = bucket[name]
            entry[0] += sign
            entry[1] += sign * record.size
            if entry[0] == 0:
                del bucket[name]

    def _forget(self, held: Held) -> None:
        record = held.record
        per_key = self._held[record.key]
        del per_key[record.public_key]
        if not per_key:
            del self._held[record.key]
        self._account(record, held.origin_ip, -1)

    def get(self, key: bytes, wall_now: float) -> list[Record]:
        """Unexpired records under ``key``, newest first."""
        found = [h.record for h in self._held.get(key, {}).values() if h.record.expires > wall_now]
        found += [r for (k, _), r in self._published.items() if k == key and r.expires > wall_now]
        unique = {r.public_key: r for r in sorted(found, key=lambda r: r.created)}
        return sorted(unique.values(), key=lambda r: r.created, reverse=True)

    def held(self) -> list[Held]:
        return [h for per_key in self._held.values() for h in per_key.values()]

    def publish(self, record: Record) -> None:
        """Remember a record this node published itself, so it republishes it until expiry."""
        self._published[(record.key, record.public_key)] = record
        if self.db is not None:
            self.db.put_record("published", record)

    def published(self) -> list[Record]:
        return list(self._published.values())

    def expire(self, wall_now: float) -> int:
        """Drop expired records (held and published); returns how many went."""
        gone = [h for h in self.held() if h.record.expires <= wall_now]
        for held in gone:
            self._forget(held)
            if self.db is not None:
                self.db.delete_record("records", held.record.key, held.record.public_key)
        old = [k for k, r in self._published.items() if r.expires <= wall_now]
        for k in old:
            del self._published[k]
            if self.db is not None:
                self.db.delete_record("published", *k)
        return len(gone) + len(old)

    def load_contacts(self) -> list[Contact]:
        return self.db.load_contacts() if self.db is not None else []

    def save_contacts(self, contacts: Iterable[Contact]) -> None:
        if self.db is not None:
            self.db.save_contacts(contacts)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
