"""SQLite persistence: versioned schema, ids kept, and a database file treated as outside input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitdust.dht.database import SCHEMA_VERSION, Database
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
        DataFormatError, match=r"dht.db \(DHT database\): schema version 2 is newer"
    ):
        Database(tmp_path / "dht.db")
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


_LOAD_AND_MEASURE = """
import sys
from bitdust.dht.database import Database
from bitdust.dht.records import RecordChecker
from bitdust.dht.schemes import STANDARD_VERIFIERS
from bitdust.dht.settings import DHTSettings
from bitdust.dht.store import RecordStore
import time
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024
before = rss()
settings = DHTSettings()
store = RecordStore(settings, Database(sys.argv[1]), bytes(20))
checker = RecordChecker(STANDARD_VERIFIERS, settings.max_age, settings.clock_skew)
loaded = store.load(checker, time.time(), 0.0)
print(loaded, store.total_bytes, rss() - before)
"""


def test_reading_a_full_store_back_costs_little_more_memory_than_its_records(
    tmp_path: Path,
) -> None:
    """Issue 10.5 saw 132 MB RSS after a restart with a full store: rows were fetched all at
    once and decoded beside them. Read row by row, memory stays near the records' own size."""
    signers = [Ed25519Signer.generate() for _ in range(16)]
    now = int(time.time())
    db = Database(tmp_path / "dht.db")
    for i in range(4000):
        record = sign_record(signers[i % 16], dht_key(f"k{i}"), os.urandom(4000), now, 3600)
        db.put_record(Table.HELD, record, f"10.{i % 16}.0.1")
    db.close()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_MEASURE, str(tmp_path / "dht.db")],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    loaded, held, grown = (int(x) for x in out)
    assert loaded == 4000
    assert grown < 1.6 * held, f"{grown / 2**20:.0f} MiB of RSS for {held / 2**20:.0f} MiB held"
