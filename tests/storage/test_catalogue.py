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
    MISSING,
    SCHEMA_VERSION,
    STORED,
    Catalogue,
    Challenge,
    ChunkPlacement,
    ChunkRow,
    Placement,
)
from bitdust.storage.interface import NotInCatalogue
from bitdust.storage.repair import SupplierHealth

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


def test_list_files_reads_a_listing_a_page_at_a_time(catalogue: Catalogue) -> None:
    for name in ("docs/a", "docs/b", "docs/c", "docs/d", "docs/e", "docs2/f", "other"):
        add_file(catalogue, name, "x")
    add_file(catalogue, "docs/c", "y")  # two versions: one row, its latest
    whole = catalogue.list_files("docs")
    pages, after = [], ""
    while page := catalogue.list_files("docs", after=after, limit=2):
        pages.append([summary.latest.path for summary in page])
        after = page[-1].latest.path
    assert pages == [["docs/a", "docs/b"], ["docs/c", "docs/d"], ["docs/e"]]
    assert [summary for page in pages for summary in page] == [s.latest.path for s in whole]
    assert [s.versions for s in catalogue.list_files("docs", after="docs/b", limit=1)] == [2]
    assert [s.latest.path for s in catalogue.list_files(after="docs2/f")] == ["other"]
    assert catalogue.list_files("docs", after="docs/e") == []
    assert catalogue.list_files(limit=0) == []


def test_unchanged_matches_the_newest_version_by_size_mode_and_mtime(
    catalogue: Catalogue,
) -> None:
    add_file(catalogue, "a.txt", "x")
    newest = add_file(catalogue, "a.txt", "x", "y")
    found = catalogue.unchanged([
        ("a.txt", 200, 0o644, MTIME_NS),  # the newest version
        ("a.txt", 100, 0o644, MTIME_NS),  # an older version's size: changed since
        ("a.txt", 200, 0o600, MTIME_NS),
        ("a.txt", 200, 0o644, MTIME_NS + 1),
        ("b.txt", 200, 0o644, MTIME_NS),
    ])  # fmt: skip
    assert found == [newest, None, None, None, None]


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

    deleted = catalogue.delete_path("a.txt")
    assert deleted.files == 1
    assert {row.id for row in deleted.released} == {chunk_id("own"), chunk_id("other")}
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

    deleted = catalogue.delete_path("docs")

    assert deleted.files == 2  # docs/a.txt and docs/sub/b.txt, not their namesakes
    assert {row.id for row in deleted.released} == {chunk_id("a"), chunk_id("b")}
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


def test_the_generation_advances_past_a_newer_copy_and_never_goes_back(
    path: Path, catalogue: Catalogue
) -> None:
    add_chunks(catalogue, "x")
    catalogue.advance_generation(40)  # a copy off-site of generation 40
    assert catalogue.generation == 41
    catalogue.advance_generation(12)
    assert catalogue.generation == 41
    add_chunks(catalogue, "y")
    assert catalogue.generation == 42
    catalogue.close()
    assert Catalogue(path).generation == 42


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
    newer = SCHEMA_VERSION + 1
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    before = path.read_bytes()

    with pytest.raises(DataFormatError, match=f"schema version {newer} is newer"):
        Catalogue(path)
    assert path.read_bytes() == before


def test_a_version_1_catalogue_is_migrated_with_its_rows(path: Path) -> None:
    """A catalogue written before the index of unreferenced chunks (schema 1) opens as the
    current schema with every row kept, and the query uses the index."""
    catalogue = Catalogue(path)
    add_file(catalogue, "a.txt", "x")
    catalogue.close()
    with sqlite3.connect(path) as db:  # back to how version 1 left it, rows and all
        db.execute("DROP INDEX chunks_unreferenced")
        db.execute("PRAGMA user_version = 1")
    db.close()

    catalogue = Catalogue(path)
    assert catalogue.version("a.txt").chunk_ids == (chunk_id("x"),)
    catalogue.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        plan = db.execute("EXPLAIN QUERY PLAN SELECT id FROM chunks WHERE refs = 0").fetchall()
    db.close()
    assert "chunks_unreferenced" in str(plan)


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
    assert len(tables) == 8
    for table in tables:
        query = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert copy.execute(query).fetchall() == original.execute(query).fetchall(), table
    assert copy.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
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


# Audits: digests, challenges, supplier health, replacement, repair -----------------------------


def digest_of(name: str, index: int) -> bytes:
    return hashlib.sha256(f"bytes of {name} {index}".encode()).digest()


def challenge(seed: int, offset: int = 0, length: int = 10) -> Challenge:
    nonce = seed.to_bytes(16, "big")
    return Challenge(nonce, offset, length, hashlib.sha256(nonce).digest())


def add_audited_chunk(catalogue: Catalogue, name: str, per_fragment: int = 2) -> bytes:
    """A 2-of-3 chunk of 90-byte fragments with digests and ``per_fragment`` challenges each."""
    catalogue.add_chunk(
        chunk_id(name),
        100,
        90,
        2,
        3,
        placements_of(name),
        digests=[digest_of(name, index) for index in range(3)],
        challenges={
            index: [challenge(index * 100 + seed) for seed in range(per_fragment)]
            for index in range(3)
        },
    )
    return chunk_id(name)


def test_challenges_are_taken_once_each_without_a_new_generation(catalogue: Catalogue) -> None:
    x = add_audited_chunk(catalogue, "x")
    assert [p.digest for p in catalogue.placements(x)] == [digest_of("x", i) for i in range(3)]
    generation = catalogue.generation

    taken = [catalogue.take_challenge(x, 1) for _ in range(3)]

    assert sorted(taken[:2], key=lambda c: c.nonce) == [challenge(100), challenge(101)]
    assert taken[2] is None, "a challenge is never asked twice"
    assert catalogue.take_challenge(x, 0) is not None, "other fragments keep theirs"
    catalogue.add_challenges(x, 1, [challenge(7)])
    assert catalogue.take_challenge(x, 1) == challenge(7)
    assert catalogue.generation == generation
    with pytest.raises(NotInCatalogue, match=chunk_id("y").hex()):
        catalogue.add_challenges(chunk_id("y"), 1, [challenge(8)])


def test_malformed_digests_and_challenges_change_nothing(catalogue: Catalogue) -> None:
    x, placements = chunk_id("x"), placements_of("x")
    with pytest.raises(ValueError, match="one 32-byte digest per placement"):
        catalogue.add_chunk(x, 100, 90, 2, 3, placements, digests=[bytes(32)] * 2)
    with pytest.raises(ValueError, match="not placed here"):
        catalogue.add_chunk(x, 100, 90, 2, 3, placements[:2], challenges={2: [challenge(1)]})
    with pytest.raises(ValueError, match="outside the 90-byte fragment"):
        catalogue.add_chunk(x, 100, 90, 2, 3, placements, challenges={0: [challenge(1, 81)]})
    short_nonce = Challenge(b"n" * 8, 0, 10, bytes(32))
    with pytest.raises(ValueError, match="malformed challenge"):
        catalogue.add_chunk(x, 100, 90, 2, 3, placements, challenges={0: [short_nonce]})
    assert catalogue.generation == 0
    with pytest.raises(NotInCatalogue):
        catalogue.chunk(x)

    add_audited_chunk(catalogue, "x")
    with pytest.raises(ValueError, match="outside"):
        catalogue.add_challenges(x, 0, [challenge(2), challenge(3, 0, 91)])
    assert {catalogue.take_challenge(x, 0) for _ in range(3)} == {challenge(0), challenge(1), None}


def test_a_moved_fragment_keeps_only_the_challenges_of_its_new_bytes(catalogue: Catalogue) -> None:
    x = add_audited_chunk(catalogue, "x")
    catalogue.mark_placement(x, 2, STORED, verified_at=5.0)
    new_digest = digest_of("rebuilt", 2)
    catalogue.move_placement(
        x, 2, "http://host-d.com/s3.xml", fragment_id("x", 2), new_digest, [challenge(9)]
    )

    placement = catalogue.placements(x)[2]
    assert (placement.supplier, placement.digest, placement.verified_at) == (
        "http://host-d.com/s3.xml",
        new_digest,
        None,
    )
    assert catalogue.take_challenge(x, 2) == challenge(9)
    assert catalogue.take_challenge(x, 2) is None
    add_audited_chunk(catalogue, "x")  # sent again: fragments 0 and 1 are unchanged
    assert catalogue.take_challenge(x, 0) is not None
    assert catalogue.take_challenge(x, 2) in (challenge(200), challenge(201))


def test_an_audit_verdict_lands_only_on_the_placement_it_checked(catalogue: Catalogue) -> None:
    x = add_audited_chunk(catalogue, "x")
    generation = catalogue.generation

    assert catalogue.mark_placement(x, 0, STORED, verified_at=7.0, if_stored_on=SUPPLIERS[0])
    assert catalogue.generation == generation, "a fragment verified again is no new generation"
    catalogue.move_placement(x, 1, "http://host-d.com/s3.xml", fragment_id("x", 1))
    assert not catalogue.mark_placement(x, 1, BAD, verified_at=8.0, if_stored_on=SUPPLIERS[1])
    assert catalogue.mark_placement(x, 2, BAD, verified_at=8.0, if_stored_on=SUPPLIERS[2])
    assert not catalogue.mark_placement(x, 2, STORED, verified_at=9.0, if_stored_on=SUPPLIERS[2])

    assert [(p.state, p.verified_at) for p in catalogue.placements(x)] == [
        (STORED, 7.0),
        (STORED, None),
        (BAD, 8.0),
    ]
    assert catalogue.generation == generation + 2, "the move and the bad verdict"


def test_supplier_health_is_kept_without_a_new_generation(catalogue: Catalogue) -> None:
    catalogue.set_suppliers(SUPPLIERS, 1000)
    generation = catalogue.generation

    catalogue.record_contact(0, False, 100.0)
    catalogue.record_contact(0, False, 200.0)
    catalogue.record_contact(1, True, 150.0)
    catalogue.record_audit(1, False, 160.0)
    catalogue.record_audit(1, False, 170.0)
    catalogue.record_audit(2, False, 160.0)
    catalogue.record_audit(2, True, 180.0)
    catalogue.mark_for_replacement(2)

    assert catalogue.supplier_health() == [
        SupplierHealth(0, last_seen=None, away_since=100.0),
        SupplierHealth(1, last_seen=150.0, audit_failures=2),
        SupplierHealth(2, replace=True),
    ]
    assert [row.last_audit for row in catalogue.suppliers()] == [None, 170.0, 180.0]
    catalogue.record_contact(0, True, 300.0)
    assert catalogue.supplier_health()[0] == SupplierHealth(0, last_seen=300.0)
    assert catalogue.generation == generation
    with pytest.raises(NotInCatalogue, match="no supplier is hired at position 3"):
        catalogue.record_audit(3, True, 1.0)

    catalogue.set_suppliers([SUPPLIERS[1], SUPPLIERS[0]], 1000)
    moved = catalogue.suppliers()[0]
    assert (moved.idurl, moved.audit_failures, moved.last_seen) == (SUPPLIERS[1], 2, 150.0)


def test_replacing_a_supplier_marks_its_fragments_missing(catalogue: Catalogue) -> None:
    catalogue.set_suppliers(SUPPLIERS, 1000)
    x, y = add_audited_chunk(catalogue, "x"), add_audited_chunk(catalogue, "y")
    catalogue.record_audit(1, False, 10.0)
    catalogue.mark_for_replacement(1)
    hired_at = catalogue.suppliers()[1].hired_at
    generation = catalogue.generation

    catalogue.replace_supplier(1, "http://host-d.com/s3.xml", 2000)

    row = catalogue.suppliers()[1]
    assert (row.idurl, row.quota, row.audit_failures, row.replace, row.last_audit) == (
        "http://host-d.com/s3.xml",
        2000,
        0,
        False,
        None,
    )
    assert row.hired_at > hired_at
    for chunk in (x, y):
        assert [p.state for p in catalogue.placements(chunk)] == [STORED, MISSING, STORED]
        assert catalogue.take_challenge(chunk, 1) is None, "the old supplier's questions"
        assert not catalogue.has_chunk(chunk)
    assert catalogue.generation == generation + 1
    with pytest.raises(ValueError, match="already hired at position 0"):
        catalogue.replace_supplier(1, SUPPLIERS[0], 2000)
    with pytest.raises(NotInCatalogue, match="position 3"):
        catalogue.replace_supplier(3, "http://host-e.com/s4.xml", 2000)


def test_chunks_to_repair_counts_stored_fragments_on_good_suppliers(
    catalogue: Catalogue,
) -> None:
    add_file(catalogue, "a.txt", "whole", "one-bad", "two-bad")
    add_chunks(catalogue, "unused")
    catalogue.mark_placement(chunk_id("one-bad"), 0, BAD)
    for index in (0, 1):
        catalogue.mark_placement(chunk_id("two-bad"), index, BAD)
        catalogue.mark_placement(chunk_id("unused"), index, BAD)

    assert catalogue.chunks_to_repair(2, set()) == [chunk_id("two-bad"), chunk_id("one-bad")]
    assert catalogue.chunks_to_repair(1, set()) == [chunk_id("two-bad")]
    assert catalogue.chunks_to_repair(0, set()) == []
    assert catalogue.chunks_to_repair(2, {2}) == [
        chunk_id("two-bad"),
        chunk_id("one-bad"),
        chunk_id("whole"),
    ]
    assert catalogue.chunks_to_repair(0, {2}) == [chunk_id("two-bad")]
    with pytest.raises(ValueError, match="positions below 64"):
        catalogue.chunks_to_repair(1, {64})


def test_sample_placements_are_stored_fragments_on_the_supplier_hired(
    catalogue: Catalogue,
) -> None:
    catalogue.set_suppliers(SUPPLIERS, 1000)
    for name in ("a", "b", "c", "d"):
        add_audited_chunk(catalogue, name)
    catalogue.mark_placement(chunk_id("b"), 1, BAD)
    catalogue.move_placement(chunk_id("c"), 1, "http://host-d.com/s3.xml", fragment_id("c", 1))

    sampled = catalogue.sample_placements(1, 10)

    assert sorted(p.chunk_id for p in sampled) == sorted([chunk_id("a"), chunk_id("d")])
    name = "a" if sampled[0].chunk_id == chunk_id("a") else "d"
    assert sampled[0] == ChunkPlacement(
        1,
        SUPPLIERS[1],
        fragment_id(name, 1),
        STORED,
        None,
        digest_of(name, 1),
        chunk_id=chunk_id(name),
        stored_size=90,
    )
    assert len(catalogue.sample_placements(0, 3)) == 3
    assert catalogue.sample_placements(0, 0) == []
    seen = {p.chunk_id for _ in range(50) for p in catalogue.sample_placements(0, 1)}
    assert len(seen) > 1, "a sample is random, not always the same placement"


def test_a_chunk_with_a_lost_fragment_is_known_but_not_whole(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "c.sqlite3")
    chunk_id = bytes(range(32))
    suppliers = ["http://host-a.com/a.xml", "http://host-b.com/b.xml"]
    catalogue.set_suppliers(suppliers, 1 << 20)
    catalogue.add_chunk(
        chunk_id, 10, 6, 1, 2, [(i, s, bytes([i]) * 32) for i, s in enumerate(suppliers)]
    )
    assert catalogue.knows_chunk(chunk_id) and catalogue.has_chunk(chunk_id)
    catalogue.replace_supplier(1, "http://host-c.com/c.xml", 1 << 20)
    assert catalogue.knows_chunk(chunk_id) and not catalogue.has_chunk(chunk_id)
    assert not catalogue.knows_chunk(bytes(32))
    catalogue.close()
