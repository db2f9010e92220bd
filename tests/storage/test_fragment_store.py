"""The supplier's fragment store on a real directory: round trips, the checks before a fragment
is kept, quotas and reservations, isolation between customers, corruption on disk, crash
leftovers, a newer ledger and file modes."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from bitdust.errors import DataFormatError
from bitdust.storage.fragment_store import (
    DB_NAME,
    MIGRATIONS,
    BadFragment,
    CustomerUsage,
    DiskError,
    FragmentCorrupt,
    FragmentReader,
    FragmentStore,
    NoSpace,
    NoSuchFragment,
    NotACustomer,
    OverQuota,
    customer_dir_name,
)
from bitdust.storage.wire import FIRST, MAX_FRAGMENT

ALICE = "http://host-a.com/alice.xml"
BOB = "http://host-b.com/bob.xml"
DONATED = 10_000


def fid(number: int) -> bytes:
    return number.to_bytes(32, "big")


@pytest.fixture
def store(tmp_path: Path):
    store = FragmentStore(tmp_path / "storage", clock=lambda: 1_700_000_000)
    store.hire(ALICE, 1000, DONATED)
    yield store
    store.close()


def put(store: FragmentStore, customer: str, fragment_id: bytes, data: bytes) -> None:
    with store.begin_put(customer, fragment_id, len(data), hashlib.sha256(data).digest()) as p:
        for start in range(0, len(data), 7):
            p.write(data[start : start + 7])
        p.commit()


def read_all(reader: FragmentReader) -> bytes:
    with reader:
        chunks = []
        while chunk := reader.read():
            chunks.append(chunk)
    return b"".join(chunks)


def usage_of(store: FragmentStore, customer: str) -> CustomerUsage | None:
    return next((row for row in store.customers() if row.idurl == customer), None)


def files_of(store: FragmentStore) -> list[Path]:
    return sorted(path for path in store.fragments_dir.rglob("*") if path.is_file())


def test_put_then_get_round_trip(store: FragmentStore) -> None:
    data = os.urandom(700)
    put(store, ALICE, fid(1), data)
    reader = store.open_fragment(ALICE, fid(1))
    assert (reader.size, reader.sha256) == (700, hashlib.sha256(data).digest())
    assert read_all(reader) == data
    [path] = files_of(store)
    assert path == (
        store.fragments_dir / customer_dir_name(ALICE) / fid(1).hex()[:2] / fid(1).hex()
    )
    assert usage_of(store, ALICE) == CustomerUsage(ALICE, 1000, 700, 1, since=1_700_000_000)
    assert store.listing(ALICE, FIRST, 10) == ([(fid(1), 700)], False)


def test_empty_fragment_is_a_fragment(store: FragmentStore) -> None:
    put(store, ALICE, fid(1), b"")
    assert read_all(store.open_fragment(ALICE, fid(1))) == b""


@pytest.mark.parametrize(
    ("data", "announced", "reason"),
    [
        (b"x" * 10, 11, "ended after 10 of the 11 bytes announced"),
        (b"x" * 10, 9, "longer than the 9 bytes announced"),
        (b"x" * 10, 10, "SHA-256 is not the one announced"),
    ],
)
def test_wrong_size_or_sha_refused_and_nothing_kept(
    store: FragmentStore, data: bytes, announced: int, reason: str
) -> None:
    wrong_sha = hashlib.sha256(b"other").digest()
    with (
        pytest.raises(BadFragment, match=reason),
        store.begin_put(ALICE, fid(1), announced, wrong_sha) as pending,
    ):
        pending.write(data)
        pending.commit()
    assert files_of(store) == []
    assert store.listing(ALICE, FIRST, 10) == ([], False)
    with pytest.raises(NoSuchFragment):
        store.open_fragment(ALICE, fid(1))
    put(store, ALICE, fid(1), b"y" * 1000)  # the reservation was given back: the quota is whole


def test_quota_counts_bytes_being_written(store: FragmentStore) -> None:
    put(store, ALICE, fid(1), b"a" * 400)
    first = store.begin_put(ALICE, fid(2), 500, bytes(32))  # in flight: 500 bytes reserved
    with pytest.raises(OverQuota, match=r"over quota: 900 of 1000 bytes used"):
        store.begin_put(ALICE, fid(3), 101, bytes(32))
    with pytest.raises(BadFragment, match="being written already"):
        store.begin_put(ALICE, fid(2), 10, bytes(32))
    second = store.begin_put(ALICE, fid(3), 100, bytes(32))  # exactly fits
    first.abort()
    second.abort()
    put(store, ALICE, fid(4), b"b" * 600)  # both reservations freed
    assert usage_of(store, ALICE).used == 1000  # type: ignore[union-attr]


def test_replacing_a_fragment_counts_only_the_difference(store: FragmentStore) -> None:
    put(store, ALICE, fid(1), b"a" * 900)
    put(store, ALICE, fid(1), b"b" * 950)
    assert read_all(store.open_fragment(ALICE, fid(1))) == b"b" * 950
    assert usage_of(store, ALICE).used == 950  # type: ignore[union-attr]
    assert len(files_of(store)) == 1


def test_hire_within_donated_space_and_never_below_what_is_stored(store: FragmentStore) -> None:
    with pytest.raises(NoSpace, match="no space: this supplier has 9000 free of 10000 donated"):
        store.hire(BOB, 9001, DONATED)
    assert store.hire(BOB, 9000, DONATED).quota == 9000
    assert store.usage().allotted == DONATED
    put(store, ALICE, fid(1), b"a" * 300)
    assert store.hire(ALICE, 100, DONATED).quota == 300  # re-hire: never below what it stores
    with pytest.raises(NoSpace, match="has 1000 free"):  # its own quota is counted as free
        store.hire(ALICE, 1001, DONATED)
    assert [c.idurl for c in store.customers()] == [ALICE, BOB]


def test_ids_that_are_not_32_bytes_refused(store: FragmentStore) -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(BadFragment, match="exactly 32 bytes"):
            store.begin_put(ALICE, bad, 1, bytes(32))
        with pytest.raises(BadFragment, match="exactly 32 bytes"):
            store.open_fragment(ALICE, bad)
        with pytest.raises(BadFragment, match="exactly 32 bytes"):
            store.delete(ALICE, [fid(1), bad])
    with pytest.raises(BadFragment, match="0 to"):
        store.begin_put(ALICE, fid(1), MAX_FRAGMENT + 1, bytes(32))
    assert files_of(store) == []
    put(store, ALICE, b"../../etc/passwd" * 2, b"x")  # 32 bytes: hex on disk, inside its dir
    [path] = files_of(store)
    assert path.parent.parent.parent == store.fragments_dir
    assert path.name == (b"../../etc/passwd" * 2).hex()


def test_a_customer_cannot_read_or_delete_anothers_fragment(store: FragmentStore) -> None:
    store.hire(BOB, 1000, DONATED)
    put(store, BOB, fid(1), b"bob's")
    with pytest.raises(NoSuchFragment, match=r"^no such fragment$"):
        store.open_fragment(ALICE, fid(1))
    with pytest.raises(NoSuchFragment, match=r"^no such fragment$"):
        store.audit(ALICE, fid(1), b"n" * 16, 0, 1)
    assert store.delete(ALICE, [fid(1)]) == (0, 0)
    assert store.listing(ALICE, FIRST, 10) == ([], False)
    assert read_all(store.open_fragment(BOB, fid(1))) == b"bob's"
    # the same id under both customers: two fragments
    put(store, ALICE, fid(1), b"alice's")
    assert read_all(store.open_fragment(ALICE, fid(1))) == b"alice's"
    assert read_all(store.open_fragment(BOB, fid(1))) == b"bob's"


def test_a_stranger_is_refused_everything(store: FragmentStore) -> None:
    stranger = "http://host-c.com/carol.xml"
    for attempt in (
        lambda: store.begin_put(stranger, fid(1), 1, bytes(32)),
        lambda: store.open_fragment(stranger, fid(1)),
        lambda: store.delete(stranger, [fid(1)]),
        lambda: store.listing(stranger, FIRST, 10),
        lambda: store.audit(stranger, fid(1), b"n" * 16, 0, 1),
        lambda: store.release(stranger),
    ):
        with pytest.raises(NotACustomer, match="not a customer of this supplier: hire it first"):
            attempt()


def test_flipped_byte_on_disk_is_found_on_read_and_changes_the_audit(
    store: FragmentStore,
) -> None:
    data = os.urandom(600)
    put(store, ALICE, fid(1), data)
    nonce = b"n" * 16
    digest = store.audit(ALICE, fid(1), nonce, 100, 200)
    assert digest == hashlib.sha256(nonce + data[100:300]).digest()
    assert store.audit(ALICE, fid(1), b"m" * 16, 100, 200) != digest  # a fresh nonce, a new answer
    [path] = files_of(store)
    flipped = bytearray(data)
    flipped[150] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(FragmentCorrupt, match="corrupt on this supplier's disk"):
        read_all(store.open_fragment(ALICE, fid(1)))
    assert store.audit(ALICE, fid(1), nonce, 100, 200) != digest
    assert (
        store.audit(ALICE, fid(1), nonce, 300, 300) == hashlib.sha256(nonce + data[300:]).digest()
    )
    with pytest.raises(BadFragment, match=r"range \[500, 601\) is outside the fragment"):
        store.audit(ALICE, fid(1), nonce, 500, 101)
    path.write_bytes(data[:500])
    with pytest.raises(FragmentCorrupt, match="size on this supplier's disk changed"):
        read_all(store.open_fragment(ALICE, fid(1)))
    path.unlink()
    with pytest.raises(FragmentCorrupt, match="missing"):
        store.open_fragment(ALICE, fid(1))


def test_delete_and_listing_pages(store: FragmentStore) -> None:
    for number in range(1, 6):
        put(store, ALICE, fid(number), b"x" * number)
    assert store.listing(ALICE, FIRST, 2) == ([(fid(1), 1), (fid(2), 2)], True)
    assert store.listing(ALICE, fid(4), 2) == ([(fid(5), 5)], False)
    assert store.delete(ALICE, [fid(2), fid(4), fid(9)]) == (2, 6)
    assert store.delete(ALICE, [fid(2)]) == (0, 0)  # twice is harmless
    assert [row[0] for row in store.listing(ALICE, FIRST, 10)[0]] == [fid(1), fid(3), fid(5)]
    assert len(files_of(store)) == 3


def test_release_frees_everything(store: FragmentStore) -> None:
    store.hire(BOB, 1000, DONATED)
    put(store, ALICE, fid(1), b"a" * 100)
    put(store, ALICE, fid(2), b"a" * 50)
    put(store, BOB, fid(1), b"b" * 10)
    assert store.release(ALICE) == 150
    assert usage_of(store, ALICE) is None
    assert not (store.fragments_dir / customer_dir_name(ALICE)).exists()
    assert store.usage().used == 10 and store.usage().allotted == 1000
    with pytest.raises(NotACustomer):
        store.begin_put(ALICE, fid(3), 1, bytes(32))
    assert read_all(store.open_fragment(BOB, fid(1))) == b"b" * 10


def test_release_during_a_put_keeps_nothing(store: FragmentStore) -> None:
    data = b"late"
    pending = store.begin_put(ALICE, fid(1), len(data), hashlib.sha256(data).digest())
    pending.write(data)
    store.release(ALICE)
    with pytest.raises((NotACustomer, DiskError)):
        pending.commit()
    store.hire(ALICE, 1000, DONATED)
    assert store.listing(ALICE, FIRST, 10) == ([], False)
    assert files_of(store) == []


def test_disk_full_ends_the_write_and_leaves_nothing(
    store: FragmentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = store.begin_put(ALICE, fid(1), 10, bytes(32))

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskError, match=r"^the supplier's disk is full$"):
        pending.write(b"0123456789")
    monkeypatch.undo()
    assert files_of(store) == []
    assert usage_of(store, ALICE).used == 0  # type: ignore[union-attr]
    put(store, ALICE, fid(1), b"z" * 1000)  # the reservation was given back


def test_stray_temporary_files_removed_at_open(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path)
    store.hire(ALICE, 1000, DONATED)
    put(store, ALICE, fid(1), b"kept")
    pending = store.begin_put(ALICE, fid(2), 4, bytes(32))
    pending.write(b"half")  # the process "crashes" here: the temporary file stays
    store.close()
    assert len(files_of(store)) == 2
    reopened = FragmentStore(tmp_path)
    [kept] = files_of(reopened)
    assert kept.name == fid(1).hex()
    assert read_all(reopened.open_fragment(ALICE, fid(1))) == b"kept"
    reopened.close()


def test_newer_ledger_refused_untouched(tmp_path: Path) -> None:
    FragmentStore(tmp_path).close()
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(DataFormatError, match="newer than this program understands"):
        FragmentStore(tmp_path)
    assert path.read_bytes() == before


def test_files_and_directories_are_private(store: FragmentStore) -> None:
    put(store, ALICE, fid(1), b"secret-ish")
    [path] = files_of(store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((store.root / DB_NAME).stat().st_mode) == 0o600
    for directory in (store.root, store.fragments_dir, path.parent, path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
