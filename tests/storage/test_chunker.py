"""The streaming chunker cuts exactly as FastCDC cuts the whole input, with bounded memory."""

from __future__ import annotations

import random

import pytest
from pyfastcdc import FastCDC

from bitdust.storage.chunker import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, Chunker

# Small sizes (within pyfastcdc's limits) keep the tests fast and give many chunks per input.
MIN, AVG, MAX = 256, 1024, 4096


def whole_input_chunks(data: bytes, min_size: int = MIN, avg: int = AVG, max_size: int = MAX):
    fastcdc = FastCDC(avg, min_size=min_size, max_size=max_size)
    return [bytes(chunk.data) for chunk in fastcdc.cut_buf(data)]


def fed_in_pieces(
    chunker: Chunker, data: bytes, rng: random.Random, largest: int, max_size: int = MAX
) -> list[bytes]:
    """Feed ``data`` in pieces of random sizes up to ``largest``, checking the memory bound."""
    chunks: list[bytes] = []
    offset = 0
    with memoryview(data) as view:
        while offset < len(data):
            size = rng.randint(1, largest)
            chunks += chunker.feed(view[offset : offset + size])
            offset += size
            assert chunker.buffered <= 1.5 * max_size
    return chunks + chunker.finish()


def text_like(rng: random.Random, size: int) -> bytes:
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


@pytest.mark.parametrize("seed", range(12))
def test_pieces_of_any_size_give_the_chunks_of_the_whole_input(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([1, 100, MAX, 2 * MAX, 2 * MAX + 1, 50_000, 300_000])
    data = rng.randbytes(size) if seed % 2 else text_like(rng, size)
    largest = rng.choice([1, 7, 1000, MAX, 3 * MAX, 100_000])
    expected = whole_input_chunks(data)

    chunks = fed_in_pieces(Chunker(MIN, AVG, MAX), data, rng, largest)

    assert chunks == expected
    assert all(type(chunk) is bytes for chunk in chunks)
    assert b"".join(chunks) == data


def test_runs_of_one_byte_are_cut_at_the_largest_size() -> None:
    data = b"\0" * (5 * MAX + 123)  # no content cut point: every chunk is forced at max_size
    chunks = fed_in_pieces(Chunker(MIN, AVG, MAX), data, random.Random(1), 3000)
    assert chunks == whole_input_chunks(data)
    assert [len(chunk) for chunk in chunks] == [MAX] * 5 + [123]


def test_one_huge_piece_never_buffers_more_than_one_and_a_half_largest_chunks() -> None:
    data = random.Random(2).randbytes(40 * MAX)
    chunker = Chunker(MIN, AVG, MAX)
    chunks = chunker.feed(data)
    assert chunker.buffered <= 1.5 * MAX
    assert chunks + chunker.finish() == whole_input_chunks(data)


def test_an_empty_stream_has_no_chunks_and_the_chunker_can_be_reused() -> None:
    chunker = Chunker(MIN, AVG, MAX)
    assert chunker.feed(b"") == []
    assert chunker.finish() == []
    data = random.Random(3).randbytes(20_000)
    assert chunker.feed(data) + chunker.finish() == whole_input_chunks(data)
    assert chunker.buffered == 0


def test_an_insertion_shifts_no_boundary_far_after_it() -> None:
    rng = random.Random(4)
    data = rng.randbytes(200_000)
    changed = data[:50_000] + b"inserted" + data[50_000:]
    before = Chunker(MIN, AVG, MAX)
    after = Chunker(MIN, AVG, MAX)
    original = before.feed(data) + before.finish()
    edited = after.feed(changed) + after.finish()
    assert len(original) > 20
    assert original[:5] == edited[:5]
    assert original[-10:] == edited[-10:]


def test_default_sizes_are_the_designs_and_cut_like_fastcdc() -> None:
    assert (MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) == (1 << 20, 4 << 20, 16 << 20)
    data = random.Random(5).randbytes(3 * MAX_CHUNK + 12345)
    chunks = fed_in_pieces(Chunker(), data, random.Random(6), 2 * MAX_CHUNK, MAX_CHUNK)
    assert chunks == whole_input_chunks(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)


def test_sizes_outside_fastcdcs_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        Chunker(MIN, AVG, 32 * 1024 * 1024)
