"""The backup pipeline (bitdust.storage.backup) with the real chunker, codec and catalogue and
fragments kept on the local disk: versions, deduplication, a file that changes while it is read,
and remote path rules."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.storage import codec
from bitdust.storage.backup import FragmentUnavailable, back_up, read_chunk, restore
from bitdust.storage.catalogue import Catalogue
from bitdust.storage.interface import BackupError, normalize_remote
from tests.storage.inprocess import InProcessPlacer

MiB = 1024 * 1024


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    catalogue = Catalogue(tmp_path / "catalogue.sqlite3")
    yield catalogue
    catalogue.close()


async def pieces_of(data: bytes, seed: int = 0) -> AsyncIterator[bytes]:
    """``data`` in pieces of random sizes, as an HTTP body arrives."""
    generator = random.Random(seed)
    position = 0
    while position < len(data):
        size = generator.randint(1, 300_000)
        yield data[position : position + size]
        position += size


async def restored(placer: InProcessPlacer, catalogue: Catalogue, path: str) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    await restore(catalogue.version(path), placer, write)
    return bytes(out)


async def test_versions_restore_and_unchanged_data_is_not_stored_again(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    placer = InProcessPlacer(tmp_path / "fragments", catalogue)
    data = random.Random(1).randbytes(20 * MiB)
    first = await back_up(pieces_of(data), placer, catalogue, "big.bin", len(data), 0o640, 7)
    assert first.new_chunks == first.chunks >= 2
    assert first.sent_bytes == placer.sent
    assert await restored(placer, catalogue, "big.bin") == data

    again = await back_up(pieces_of(data, 2), placer, catalogue, "big.bin", len(data), 0o640, 8)
    assert (again.new_chunks, again.sent_bytes) == (0, 0)
    assert again.version != first.version

    changed = bytearray(data)
    changed[10 * MiB : 10 * MiB + 1000] = bytes(1000)
    third = await back_up(
        pieces_of(bytes(changed)), placer, catalogue, "big.bin", len(data), 0o640, 9
    )
    assert 1 <= third.new_chunks <= 2 and third.sent_bytes < first.sent_bytes / 2
    assert await restored(placer, catalogue, "big.bin") == bytes(changed)
    versions = catalogue.versions("big.bin")
    assert [v.version for v in versions] == [third.version, again.version, first.version]
    assert versions[0].sha256 == hashlib.sha256(changed).digest()


@pytest.mark.parametrize("size", [0, 1, 1000])
async def test_small_files(tmp_path: Path, catalogue: Catalogue, size: int) -> None:
    placer = InProcessPlacer(tmp_path / "fragments", catalogue)
    data = b"x" * size
    result = await back_up(pieces_of(data), placer, catalogue, "small", size, 0o600, 1)
    assert result.chunks == (1 if size else 0)
    assert await restored(placer, catalogue, "small") == data


@pytest.mark.parametrize("announced", [5 * MiB, 3 * MiB])
async def test_a_file_that_changed_while_read_records_no_version(
    tmp_path: Path, catalogue: Catalogue, announced: int
) -> None:
    """More or fewer bytes than announced: refused, no version; the chunks already stored stay
    known, so the retry sends nothing twice."""
    placer = InProcessPlacer(tmp_path / "fragments", catalogue)
    data = random.Random(3).randbytes(4 * MiB)
    with pytest.raises(BackupError, match=r"(changed|grew) while it was read"):
        await back_up(pieces_of(data), placer, catalogue, "moving", announced, 0o600, 1)
    assert catalogue.versions("moving") == []
    retry = await back_up(pieces_of(data), placer, catalogue, "moving", len(data), 0o600, 1)
    assert retry.chunks >= 1
    assert await restored(placer, catalogue, "moving") == data


async def test_fragments_lost_beyond_n_minus_k_fail_the_restore(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    placer = InProcessPlacer(tmp_path / "fragments", catalogue)
    data = random.Random(4).randbytes(MiB)
    await back_up(pieces_of(data), placer, catalogue, "f", len(data), 0o600, 1)
    [chunk_id] = catalogue.version("f").chunk_ids
    for placement in catalogue.placements(chunk_id)[:3]:  # 3 of 4 gone; k = 2
        placer.path(placement.index, placement.fragment_id).unlink()
    with pytest.raises(codec.NotEnoughFragments):
        await restored(placer, catalogue, "f")


async def test_a_restore_that_differs_from_the_catalogue_never_writes_the_whole_file(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    """The check of the file's SHA-256 comes before its last chunk is written: a reader that
    trusts the announced size sees a short file, never a complete wrong one."""
    placer = InProcessPlacer(tmp_path / "fragments", catalogue)
    data = random.Random(5).randbytes(20 * MiB)
    await back_up(pieces_of(data), placer, catalogue, "f", len(data), 0o600, 1)
    recorded = catalogue.version("f")
    assert len(recorded.chunk_ids) >= 2
    wrong = dataclasses.replace(recorded, sha256=hashlib.sha256(b"other").digest())
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    with pytest.raises(BackupError, match="differ from the backed-up file"):
        await restore(wrong, placer, write)
    assert 0 < len(out) < len(data) and data.startswith(out)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("docs/a.txt", "docs/a.txt"),
        ("/docs//./a.txt", "docs/a.txt"),
        ("master$alice@host-a.com:docs/a.txt", "docs/a.txt"),
    ],
)
def test_remote_paths(given: str, expected: str) -> None:
    assert normalize_remote(given, ("alice@host-a.com",)) == expected


@pytest.mark.parametrize(
    "given",
    ["", "/", "../etc/passwd", "docs/../../x", "a\0b", "x" * 5000, "master$bob@host-b.com:a"],
)
def test_remote_paths_refused(given: str) -> None:
    with pytest.raises(BackupError):
        normalize_remote(given, ("alice@host-a.com",))


def encoded_chunk(k: int = 2, n: int = 4) -> tuple[codec.DataKeys, bytes, bytes, list[bytes]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = codec.DataKeys.from_identity_key(key)
    plaintext = random.Random(5).randbytes(300_000)
    encoded = codec.encode_chunk(keys, plaintext, k, n)
    return keys, plaintext, encoded.chunk_id, encoded.fragments


async def read_with(
    fragments: list[bytes], keys: codec.DataKeys, chunk_id: bytes, gone: set[int], k: int = 2
) -> tuple[bytes, list[int]]:
    asked: list[int] = []

    async def fetch(index: int) -> bytes:
        asked.append(index)
        if index in gone:
            raise FragmentUnavailable("from a supplier that is gone")
        return fragments[index]

    async def decode(chosen: dict[int, bytes]) -> bytes:
        return codec.decode_chunk(keys, chunk_id, chosen)

    return await read_chunk(range(len(fragments)), k, fetch, decode, chunk_id.hex()), asked


async def test_read_chunk_asks_only_k_suppliers_when_all_answer() -> None:
    keys, plaintext, chunk_id, fragments = encoded_chunk()
    assert await read_with(fragments, keys, chunk_id, set()) == (plaintext, [0, 1])


async def test_read_chunk_asks_others_when_suppliers_are_gone() -> None:
    keys, plaintext, chunk_id, fragments = encoded_chunk()
    data, asked = await read_with(fragments, keys, chunk_id, {0, 2})
    assert data == plaintext and sorted(asked) == [0, 1, 2, 3]


async def test_read_chunk_takes_another_fragment_when_one_has_wrong_bytes() -> None:
    """A supplier returning wrong bytes (well-formed, so only the chunk's tag can tell): the
    reader fetches one more and finds a combination that verifies."""
    keys, plaintext, chunk_id, fragments = encoded_chunk()
    forged = bytearray(fragments[1])
    forged[-1] ^= 0x01
    fragments[1] = bytes(forged)
    data, asked = await read_with(fragments, keys, chunk_id, set())
    assert data == plaintext and asked == [0, 1, 2]


async def test_read_chunk_names_the_chunk_when_fewer_than_k_are_good() -> None:
    keys, _, chunk_id, fragments = encoded_chunk()
    with pytest.raises(BackupError, match=rf"chunk {chunk_id.hex()[:16]}: fewer than 2 good"):
        await read_with(fragments, keys, chunk_id, {0, 1, 3})
