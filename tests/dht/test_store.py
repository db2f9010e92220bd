"""SQLite persistence: versioned schema, ids kept, and a database file treated as outside input."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bitdust.dht.database import SCHEMA_VERSION, Database, DatabaseError
from bitdust.dht.persistence import Table
from bitdust.dht.records import RecordChecker, dht_key, sign_record
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.store import RecordStore
from bitdust.dht.wire import Contact
from bitdust.errors import DataFormatError


def test_new_database_has_the_current_schema_version_and_keeps_its_ids(tmp_path: Path) -> None:
    db = Database(tmp_path / "dht.db")
    node_id, key = db.node_id(), db.signer().public_key
    db.close()
    raw = sqlite3.connect(tmp_path / "dht.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    again = Database(tmp_path / "dht.db")
    assert again.node_id() == node_id and again.signer().public_key == key
    again.close()


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "dht.db")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before = (tmp_path / "dht.db").read_bytes()
    with pytest.raises(
        DataFormatError, match=r"dht.db: DHT database schema version 2 is newer"
    ) as refused:
        Database(tmp_path / "dht.db")
    assert isinstance(refused.value, DatabaseError)
    assert (tmp_path / "dht.db").read_bytes() == before


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dht.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataFormatError, match="not a usable DHT database"):
        Database(tmp_path / "dht.db")


def test_tampered_and_expired_rows_are_dropped_on_load(tmp_path: Path) -> None:
    settings = DHTSettings()
    signer = Ed25519Signer.generate()
    now = int(time.time())
    good = sign_record(signer, dht_key("good"), b"ok", now, 3600)
    old = sign_record(signer, dht_key("old"), b"gone", now - 7200, 3600)
    forged = sign_record(signer, dht_key("forged"), b"x", now, 3600)
    db = Database(tmp_path / "dht.db")
    for record in (good, old, forged):
        db.put_record(Table.HELD, record, "10.0.0.1")
    db.flush()
    db._db.execute(
        "INSERT INTO records VALUES (?, ?, ?, ?)", (b"k" * 20, b"p", b"\xc1garbage", "10.0.0.1")
    )
    db._db.execute(
        "UPDATE records SET data = replace(data, ?, ?) WHERE key = ?",
        (b"\xa1x", b"\xa1y", forged.key),
    )
    db.save_contacts([Contact(b"c" * 20, "10.0.0.2", 14441), Contact(b"d" * 20, "10.0.0.3", 1)])
    db.close()

    again = Database(tmp_path / "dht.db")
    store = RecordStore(settings, again, bytes(20))
    checker = RecordChecker(STANDARD_VERIFIERS, settings.max_age, settings.clock_skew)
    assert store.load(checker, now, 0.0) == 1
    assert [h.record for h in store.held()] == [good]
    assert len(again.load_contacts()) == 2
    again.close()


def test_database_writes_wait_for_flush_and_commit_together(tmp_path: Path) -> None:
    """The core's writes are queued: handling a datagram never waits on the disk."""
    signer = Ed25519Signer.generate()
    now = int(time.time())
    db = Database(tmp_path / "dht.db")
    store = RecordStore(DHTSettings(), db, bytes(20))
    records = [sign_record(signer, dht_key(f"k{i}"), b"v", now, 3600) for i in range(3)]
    for record in records:
        assert store.put(record, "10.0.0.1", 0.0) is None
    raw = sqlite3.connect(tmp_path / "dht.db")
    assert raw.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    assert db.dirty
    db.flush()
    assert raw.execute("SELECT count(*) FROM records").fetchone()[0] == 3
    assert not db.dirty
    raw.close()
    db.close()
