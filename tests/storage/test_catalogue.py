"""The customer's catalogue: versions, chunk references, placements, pruning, the file itself."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from bitdust.errors import DataFormatError
from bitdust.storage.catalogue import (
    BAD,
    STORED,
    Catalogue,
    ChunkRow,
    NotInCatalogue,
    Placement,
)

MTIME_NS = 1_700_000_000_123_456_789  # more digits than a float's seconds keep
SUPPLIERS = ["http://host-a.com/s0.xml", "http://host-b.com/s1.xml", "http://host-c.com/s2.xml"]


def chunk_id(name: str) -> bytes:
    return hashlib.sha256(b"chunk " + name.encode()).digest()


def fragment_id(name: str, index: int) -> bytes:
    return hashlib.sha256(f"fragment {name} {index}".encode()).digest()


def placements_of(name: str, suppliers: list[str] = SUPPLIERS) -> list[tuple[int, str, bytes]]:
    return [(index, idurl, fragment_id(name, index)) for index, idurl in enumerate(suppliers)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "storage" / "catalogue.sqlite3"


@pytest.fixture
def catalogue(path: Path):
    opened = Catalogue(path, clock=Clock())
    yield opened
    opened.close()


def add_chunks(catalogue: Catalogue, *names: str, size: int = 100) -> list[bytes]:
    for name in names:
        catalogue.add_chunk(chunk_id(name), size, size // 2 + 40, 2, 3, placements_of(name))
    return [chunk_id(name) for name in names]


def add_file(catalogue: Catalogue, path: str, *chunk_names: str, size: int = 100):
    snapshot = catalogue.begin_snapshot()
    ids = add_chunks(catalogue, *chunk_names, size=size)
    version = catalogue.add_version(
        snapshot,
        path,
        size * len(ids),
        MTIME_NS,
        0o644,
        hashlib.sha256(path.encode()).digest(),
        ids,
    )
    catalogue.end_snapshot(snapshot, True)
    return version


def refs(catalogue: Catalogue, name: str) -> int:
    return catalogue.chunk(chunk_id(name)).refs


def test_versions_round_trip_with_their_chunk_lists(catalogue: Catalogue) -> None:
    first = add_file(catalogue, "docs/a.txt", "x", "y")
    second = add_file(catalogue, "docs/a.txt", "y", "z", "x")

    assert catalogue.versions("docs/a.txt") == [second, first]
    assert catalogue.version("docs/a.txt") == second
    assert catalogue.version("docs/a.txt", first.version) == first
    assert first.chunk_ids == (chunk_id("x"), chunk_id("y"))
    assert second.chunk_ids == (chunk_id("y"), chunk_id("z"), chunk_id("x"))
    assert (second.size, second.mtime_ns, second.mode) == (300, MTIME_NS, 0o644)
    assert second.sha256 == hashlib.sha256(b"docs/a.txt").digest()


def test_an_empty_file_is_a_version_without_chunks(catalogue: Catalogue) -> None:
    snapshot = catalogue.begin_snapshot()
    empty = catalogue.add_version(snapshot, "empty", 0, 1, 0o600, hashlib.sha256().digest(), [])
    assert catalogue.version("empty") == empty
    assert empty.chunk_ids == ()


def test_missing_paths_and_versions_are_named(catalogue: Catalogue) -> None:
    version = add_file(catalogue, "a.txt", "x")
    with pytest.raises(NotInCatalogue, match=r"b\.txt: not in the catalogue"):
        catalogue.version("b.txt")
    with pytest.raises(NotInCatalogue, match=rf"a\.txt: no version {version.version + 1}"):
        catalogue.version("a.txt", version.version + 1)
    assert catalogue.versions("b.txt") == []


def test_list_files_shows_the_latest_version_under_a_prefix(catalogue: Catalogue) -> None:
    add_file(catalogue, "docs/a.txt", "x")
    latest = add_file(catalogue, "docs/a.txt", "y")
    add_file(catalogue, "docs/sub/b.txt", "z")
    add_file(catalogue, "docs2/c.txt", "w")
    add_file(catalogue, "docs", "v")

    listed = {summary.latest.path: summary for summary in catalogue.list_files("docs")}
    assert sorted(listed) == ["docs", "docs/a.txt", "docs/sub/b.txt"]
    summary = listed["docs/a.txt"]
    assert (summary.latest.version, summary.latest.mtime_ns, summary.versions) == (
        latest.version,
        MTIME_NS,
        2,
    )
    assert [summary.latest.path for summary in catalogue.list_files("docs/")] == sorted(listed)
    assert len(catalogue.list_files()) == 4


def test_a_chunk_used_twice_counts_each_reference(catalogue: Catalogue) -> None:
    add_file(catalogue, "a.txt", "shared", "shared", "own")
    assert refs(catalogue, "shared") == 2
    add_file(catalogue, "b.txt", "shared")
    add_file(catalogue, "a.txt", "shared", "other")
    assert (refs(catalogue, "shared"), refs(catalogue, "own"), refs(catalogue, "other")) == (
        4,
        1,
        1,
    )

    released = catalogue.delete_path("a.txt")
    assert {row.id for row in released} == {chunk_id("own"), chunk_id("other")}
    assert refs(catalogue, "shared") == 1


def test_has_chunk_only_when_every_fragment_is_stored(catalogue: Catalogue) -> None:
    assert not catalogue.has_chunk(chunk_id("x"))
    catalogue.add_chunk(chunk_id("x"), 100, 90, 2, 3, placements_of("x")[:2])
    assert not catalogue.has_chunk(chunk_id("x")), "fragment 2 was never placed"
    catalogue.add_chunk(chunk_id("x"), 100, 90, 2, 3, placements_of("x")[2:])
    assert catalogue.has_chunk(chunk_id("x"))
    catalogue.mark_placement(chunk_id("x"), 1, BAD, verified_at=5.0)
    assert not catalogue.has_chunk(chunk_id("x"))
    catalogue.add_chunk(chunk_id("x"), 100, 90, 2, 3, placements_of("x")[1:2])
    assert catalogue.has_chunk(chunk_id("x"))
    assert catalogue.chunk(chunk_id("x")) == ChunkRow(chunk_id("x"), 100, 90, 2, 3, 0)


def test_placements_are_recorded_marked_and_moved(catalogue: Catalogue) -> None:
    add_chunks(catalogue, "x")
    catalogue.mark_placement(chunk_id("x"), 0, STORED, verified_at=10.0)
    catalogue.mark_placement(chunk_id("x"), 1, BAD)
    catalogue.move_placement(chunk_id("x"), 2, "http://host-d.com/s3.xml", fragment_id("y", 2))

    assert catalogue.placements(chunk_id("x")) == [
        Placement(0, SUPPLIERS[0], fragment_id("x", 0), STORED, 10.0),
        Placement(1, SUPPLIERS[1], fragment_id("x", 1), BAD, None),
        Placement(2, "http://host-d.com/s3.xml", fragment_id("y", 2), STORED, None),
    ]
    with pytest.raises(NotInCatalogue, match="no fragment 5"):
        catalogue.mark_placement(chunk_id("x"), 5, STORED)
    with pytest.raises(ValueError, match="no fragment index 3"):
        catalogue.move_placement(chunk_id("x"), 3, SUPPLIERS[0], fragment_id("x", 3))
    with pytest.raises(NotInCatalogue, match=chunk_id("unknown").hex()):
        catalogue.placements(chunk_id("unknown"))


def test_stored_bytes_counts_one_fragment_per_placement(catalogue: Catalogue) -> None:
    catalogue.add_chunk(chunk_id("x"), 100, 60, 2, 3, placements_of("x"))
    catalogue.add_chunk(chunk_id("y"), 10, 15, 1, 2, placements_of("y", SUPPLIERS[1:]))
    assert catalogue.stored_bytes() == {SUPPLIERS[0]: 60, SUPPLIERS[1]: 75, SUPPLIERS[2]: 75}


def test_prune_keeps_the_newest_and_returns_chunks_nobody_uses(catalogue: Catalogue) -> None:
    add_file(catalogue, "a.txt", "old", "kept")
    add_file(catalogue, "a.txt", "middle", "also-elsewhere")
    newer = add_file(catalogue, "a.txt", "kept", "new")
    newest = add_file(catalogue, "a.txt", "new")
    add_file(catalogue, "b.txt", "also-elsewhere")

    released = catalogue.prune("a.txt", keep=2)

    assert catalogue.versions("a.txt") == [newest, newer]
    assert {row.id for row in released} == {chunk_id("old"), chunk_id("middle")}
    assert all(row.refs == 0 for row in released)
    assert set(catalogue.unreferenced_chunks()) == set(released)
    assert (refs(catalogue, "kept"), refs(catalogue, "new"), refs(catalogue, "also-elsewhere")) == (
        1,
        2,
        1,
    )
    assert catalogue.prune("a.txt", keep=2) == []
    with pytest.raises(NotInCatalogue, match=r"c\.txt"):
        catalogue.prune("c.txt", keep=1)


def test_deleting_a_directory_leaves_its_namesakes(catalogue: Catalogue) -> None:
    add_file(catalogue, "docs/a.txt", "a")
    add_file(catalogue, "docs/sub/b.txt", "b")
    add_file(catalogue, "docs2/c.txt", "c")
    add_file(catalogue, "docs.txt", "d")

    released = catalogue.delete_path("docs")

    assert {row.id for row in released} == {chunk_id("a"), chunk_id("b")}
    assert [summary.latest.path for summary in catalogue.list_files()] == [
        "docs.txt",
        "docs2/c.txt",
    ]
    with pytest.raises(NotInCatalogue, match="docs: not in the catalogue"):
        catalogue.delete_path("docs")
    with pytest.raises(ValueError, match="name the path"):
        catalogue.delete_path("/")


def test_forget_chunks_drops_only_unreferenced_ones(catalogue: Catalogue) -> None:
    add_file(catalogue, "a.txt", "x")
    add_chunks(catalogue, "orphan")
    with pytest.raises(ValueError, match="used by 1 versions"):
        catalogue.forget_chunks([chunk_id("orphan"), chunk_id("x")])
    assert catalogue.has_chunk(chunk_id("orphan")), "a refused call changes nothing"

    catalogue.forget_chunks([chunk_id("orphan"), chunk_id("never-known")])
    assert catalogue.unreferenced_chunks() == []
    assert catalogue.stored_bytes() == {idurl: 90 for idurl in SUPPLIERS}


def test_a_version_needs_a_running_snapshot_and_known_chunks(catalogue: Catalogue) -> None:
    snapshot = catalogue.begin_snapshot()
    ids = add_chunks(catalogue, "x")
    sha = bytes(32)
    with pytest.raises(NotInCatalogue, match=chunk_id("y").hex()):
        catalogue.add_version(snapshot, "a.txt", 200, 0, 0o600, sha, [*ids, chunk_id("y")])
    with pytest.raises(ValueError, match="its chunks hold 100"):
        catalogue.add_version(snapshot, "a.txt", 99, 0, 0o600, sha, ids)
    catalogue.end_snapshot(snapshot, False)
    with pytest.raises(ValueError, match="has ended"):
        catalogue.add_version(snapshot, "a.txt", 100, 0, 0o600, sha, ids)
    assert catalogue.versions("a.txt") == []
    assert refs(catalogue, "x") == 0


def test_a_known_chunk_of_another_shape_is_refused(catalogue: Catalogue) -> None:
    add_chunks(catalogue, "x")
    with pytest.raises(ValueError, match="already stored as 2-of-3"):
        catalogue.add_chunk(chunk_id("x"), 100, 40, 3, 4, placements_of("x"))
    with pytest.raises(ValueError, match="fragment indexes"):
        catalogue.add_chunk(chunk_id("y"), 100, 90, 2, 3, [(3, SUPPLIERS[0], fragment_id("y", 3))])


def test_generation_goes_up_once_per_change(path: Path, catalogue: Catalogue) -> None:
    assert catalogue.generation == 0
    catalogue.set_suppliers(SUPPLIERS, 1000)
    assert catalogue.generation == 1
    catalogue.set_suppliers(SUPPLIERS, 1000)
    assert catalogue.generation == 1, "nothing changed"
    add_chunks(catalogue, "x")
    add_chunks(catalogue, "x")
    assert catalogue.generation == 2, "adding a known chunk again changes nothing"
    snapshot = catalogue.begin_snapshot()
    catalogue.add_version(snapshot, "a.txt", 100, 0, 0o600, bytes(32), [chunk_id("x")])
    catalogue.end_snapshot(snapshot, True)
    catalogue.prune("a.txt", keep=1)
    assert catalogue.generation == 5
    with pytest.raises(ValueError):
        catalogue.forget_chunks([chunk_id("x")])
    catalogue.delete_path("a.txt")
    catalogue.forget_chunks([chunk_id("x")])
    assert catalogue.generation == 7
    catalogue.close()
    assert Catalogue(path).generation == 7


def test_suppliers_are_replaced_and_keep_their_hiring_time(catalogue: Catalogue) -> None:
    catalogue.set_suppliers(SUPPLIERS[:2], 500)
    first = catalogue.suppliers()
    catalogue.set_suppliers([SUPPLIERS[1], SUPPLIERS[2]], 800)
    second = catalogue.suppliers()
    assert [(row.position, row.idurl, row.quota) for row in second] == [
        (0, SUPPLIERS[1], 800),
        (1, SUPPLIERS[2], 800),
    ]
    assert second[0].hired_at == first[1].hired_at
    assert second[1].hired_at > first[1].hired_at
    with pytest.raises(ValueError, match="distinct"):
        catalogue.set_suppliers([SUPPLIERS[0], SUPPLIERS[0]], 500)


def test_reopening_keeps_everything(path: Path) -> None:
    catalogue = Catalogue(path)
    catalogue.set_suppliers(SUPPLIERS, 1000)
    version = add_file(catalogue, "docs/a.txt", "x", "y")
    placements = catalogue.placements(chunk_id("x"))
    files = catalogue.list_files()
    catalogue.close()

    reopened = Catalogue(path)
    assert reopened.version("docs/a.txt") == version
    assert reopened.placements(chunk_id("x")) == placements
    assert reopened.list_files() == files
    assert [row.idurl for row in reopened.suppliers()] == SUPPLIERS
    assert reopened.has_chunk(chunk_id("y"))
    reopened.close()


def test_the_file_is_private(path: Path, catalogue: Catalogue) -> None:
    add_file(catalogue, "a.txt", "x")
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name


def test_a_newer_schema_is_refused_untouched(path: Path) -> None:
    Catalogue(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 2")
    db.close()
    before = path.read_bytes()

    with pytest.raises(DataFormatError, match="schema version 2 is newer"):
        Catalogue(path)
    assert path.read_bytes() == before


def test_a_malformed_row_is_a_clear_error(path: Path) -> None:
    catalogue = Catalogue(path)
    add_file(catalogue, "a.txt", "x")
    catalogue.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE placements SET fragment_id = x'00' WHERE fragment = 1")
        db.execute("UPDATE files SET sha256 = 'text'")
    db.close()

    catalogue = Catalogue(path)
    with pytest.raises(DataFormatError, match="malformed fragment_id"):
        catalogue.placements(chunk_id("x"))
    with pytest.raises(DataFormatError, match="malformed sha256"):
        catalogue.version("a.txt")
    catalogue.close()


def test_snapshot_bytes_is_a_copy_of_every_row(path: Path, catalogue: Catalogue) -> None:
    catalogue.set_suppliers(SUPPLIERS, 1000)
    add_file(catalogue, "a.txt", "x", "y")
    add_file(catalogue, "b.txt", "y")

    copy = sqlite3.connect(":memory:")
    copy.deserialize(catalogue.snapshot_bytes())
    original = sqlite3.connect(path)
    tables = [
        row[0] for row in original.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    assert len(tables) == 7
    for table in tables:
        query = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert copy.execute(query).fetchall() == original.execute(query).fetchall(), table
    assert copy.execute("PRAGMA user_version").fetchone() == (1,)
    copy.close()
    original.close()

    restored = path.with_name("restored.sqlite3")
    restored.write_bytes(catalogue.snapshot_bytes())
    reopened = Catalogue(restored)
    assert reopened.versions("a.txt") == catalogue.versions("a.txt")
    assert reopened.generation == catalogue.generation
    reopened.close()


def test_writes_from_two_threads_are_serialized(catalogue: Catalogue) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(thread: int) -> None:
        try:
            start.wait()
            for index in range(100):
                name = f"{thread}-{index}"
                add_file(catalogue, f"t{thread}/{index}", name, "shared")
                catalogue.list_files(f"t{thread}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(catalogue.list_files()) == 200
    assert refs(catalogue, "shared") == 200
    assert catalogue.generation == 200 * 4 + 1, "each add_file is 4 changes; 'shared' added once"
