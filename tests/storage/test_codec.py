"""The chunk codec: any k of n fragments restore a chunk; altered or foreign fragments never do."""

from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from bitdust.identity.keys import generate_private_key
from bitdust.storage import codec
from bitdust.storage.codec import (
    HEADER,
    MAX_PLAINTEXT,
    ChunkCorrupt,
    CodecError,
    DataKeys,
    MalformedFragment,
    NotEnoughFragments,
    decode_chunk,
    encode_chunk,
    fragment_info,
    share_for,
)

MARKER = b"PLAINTEXT-MARKER-7c1f"


@pytest.fixture(scope="module")
def keys() -> DataKeys:
    return DataKeys.from_identity_key(generate_private_key())


def text(size: int, seed: int = 0) -> bytes:
    """Compressible, text-like, and not a trivial repetition."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 8)).hex().encode() for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def randomly(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


PLAINTEXTS = {
    "empty": b"",
    "one byte": b"x",
    "random 5 MiB": randomly(5 * 1024 * 1024),
    "text": text(300_000),
}


@pytest.mark.parametrize("name", PLAINTEXTS)
@pytest.mark.parametrize("k,n", [(1, 2), (2, 4), (4, 7), (13, 26)])
def test_any_last_k_fragments_restore_the_chunk(keys: DataKeys, name: str, k: int, n: int) -> None:
    plaintext = PLAINTEXTS[name]
    encoded = encode_chunk(keys, plaintext, k, n)
    assert len(encoded.fragments) == n
    assert encoded.size == len(plaintext)
    assert encoded.chunk_id == keys.chunk_id_of(plaintext)
    parity_first = {i: encoded.fragments[i] for i in range(n - k, n)}
    assert decode_chunk(keys, encoded.chunk_id, parity_first) == plaintext


@pytest.mark.parametrize("plaintext", [text(100_000), randomly(100_000)], ids=["text", "random"])
def test_every_two_of_four_fragments_restore_the_chunk(keys: DataKeys, plaintext: bytes) -> None:
    encoded = encode_chunk(keys, plaintext, 2, 4)
    for pair in itertools.combinations(range(4), 2):
        given_ = {i: encoded.fragments[i] for i in pair}
        assert decode_chunk(keys, encoded.chunk_id, given_) == plaintext


def test_extra_fragments_are_ignored_and_too_few_are_refused(keys: DataKeys) -> None:
    encoded = encode_chunk(keys, text(10_000), 4, 7)
    everything = dict(enumerate(encoded.fragments))
    assert decode_chunk(keys, encoded.chunk_id, everything) == text(10_000)
    with pytest.raises(NotEnoughFragments, match="3 fragments given, 4 needed"):
        decode_chunk(keys, encoded.chunk_id, {i: encoded.fragments[i] for i in (0, 3, 6)})
    with pytest.raises(NotEnoughFragments):
        decode_chunk(keys, encoded.chunk_id, {})


def test_random_data_is_stored_as_it_is_and_text_compressed(keys: DataKeys) -> None:
    random_chunk = encode_chunk(keys, randomly(1_000_000), 2, 4)
    text_chunk = encode_chunk(keys, text(1_000_000), 2, 4)
    assert not random_chunk.compressed
    assert not fragment_info(random_chunk.fragments[0]).compressed
    assert text_chunk.compressed
    assert fragment_info(text_chunk.fragments[0]).compressed
    assert len(text_chunk.fragments[0]) < 1_000_000 // 2 // 2


def test_a_random_chunk_after_a_compressible_start_is_never_stored_larger(keys: DataKeys) -> None:
    plaintext = text(70_000) + randomly(2_000_000)
    encoded = encode_chunk(keys, plaintext, 1, 2)
    header = fragment_info(encoded.fragments[0])
    assert header.length <= len(plaintext) + codec.TAG_SIZE
    assert decode_chunk(keys, encoded.chunk_id, {1: encoded.fragments[1]}) == plaintext


def test_the_same_plaintext_gives_the_same_id_and_fragments(keys: DataKeys) -> None:
    for plaintext in (text(50_000), randomly(50_000)):
        first = encode_chunk(keys, plaintext, 4, 7)
        again = encode_chunk(keys, bytes(plaintext), 4, 7)
        assert again == first


def test_another_identity_key_gives_other_ids_and_cannot_read(keys: DataKeys) -> None:
    other = DataKeys.from_identity_key(generate_private_key())
    plaintext = text(20_000)
    mine = encode_chunk(keys, plaintext, 2, 4)
    theirs = encode_chunk(other, plaintext, 2, 4)
    assert mine.chunk_id != theirs.chunk_id
    assert keys.fragment_id_of(mine.chunk_id, 0) != other.fragment_id_of(mine.chunk_id, 0)
    assert set(map(bytes, mine.fragments)).isdisjoint(map(bytes, theirs.fragments))
    with pytest.raises(ChunkCorrupt, match=mine.chunk_id.hex()):
        decode_chunk(other, mine.chunk_id, dict(enumerate(mine.fragments)))


def test_fragment_ids_differ_per_index_and_chunk_and_hide_the_chunk_id(keys: DataKeys) -> None:
    chunk_a, chunk_b = keys.chunk_id_of(b"a"), keys.chunk_id_of(b"b")
    ids = {keys.fragment_id_of(chunk, index) for chunk in (chunk_a, chunk_b) for index in range(64)}
    assert len(ids) == 128
    assert all(len(fragment_id) == 32 for fragment_id in ids)
    assert chunk_a not in ids
    assert keys.fragment_id_of(chunk_a, 5) == keys.fragment_id_of(chunk_a, 5)
    with pytest.raises(ValueError):
        keys.fragment_id_of(chunk_a, 64)


@pytest.mark.parametrize("plaintext", [text(200_000), randomly(200_000)], ids=["text", "random"])
def test_share_for_rebuilds_each_fragment_exactly(keys: DataKeys, plaintext: bytes) -> None:
    encoded = encode_chunk(keys, plaintext, 4, 7)
    for index in range(7):
        others = [i for i in range(7) if i != index]
        given_ = {i: encoded.fragments[i] for i in random.Random(index).sample(others, 4)}
        assert share_for(keys, encoded.chunk_id, given_, index) == encoded.fragments[index]


def test_share_for_never_rebuilds_from_a_corrupt_share(keys: DataKeys) -> None:
    encoded = encode_chunk(keys, randomly(10_000), 2, 4)
    corrupt = bytearray(encoded.fragments[1])
    corrupt[-1] ^= 1
    with pytest.raises(ChunkCorrupt):
        share_for(keys, encoded.chunk_id, {1: bytes(corrupt), 2: encoded.fragments[2]}, 0)


@pytest.mark.parametrize("plaintext", [text(100_000), randomly(100_000)], ids=["text", "random"])
def test_a_flipped_byte_in_any_share_is_detected(keys: DataKeys, plaintext: bytes) -> None:
    encoded = encode_chunk(keys, plaintext, 2, 4)
    for index in (0, 3):
        for offset in (HEADER.size, len(encoded.fragments[index]) // 2):
            flipped = bytearray(encoded.fragments[index])
            flipped[offset] ^= 0x40
            given_ = {index: bytes(flipped), 1: encoded.fragments[1]}
            with pytest.raises(ChunkCorrupt, match=encoded.chunk_id.hex()):
                decode_chunk(keys, encoded.chunk_id, given_)


def test_the_wrong_chunk_id_is_refused(keys: DataKeys) -> None:
    encoded = encode_chunk(keys, text(5000), 1, 2)
    with pytest.raises(ChunkCorrupt):
        decode_chunk(keys, keys.chunk_id_of(b"another"), {0: encoded.fragments[0]})


def test_fragments_of_two_chunks_mixed_are_refused(keys: DataKeys) -> None:
    one = encode_chunk(keys, randomly(10_000, seed=1), 2, 4)
    same_size = encode_chunk(keys, randomly(10_000, seed=2), 2, 4)
    other_size = encode_chunk(keys, randomly(10_001, seed=3), 2, 4)
    with pytest.raises(ChunkCorrupt):
        decode_chunk(keys, one.chunk_id, {0: one.fragments[0], 1: same_size.fragments[1]})
    with pytest.raises(MalformedFragment, match="not of the same chunk"):
        decode_chunk(keys, one.chunk_id, {0: one.fragments[0], 1: other_size.fragments[1]})


def patched(fragment: bytes, **fields: int | bytes) -> bytes:
    """The fragment with some header fields replaced (by name)."""
    names = ("magic", "version", "flags", "k", "n", "index", "size", "length", "nonce")
    values = dict(zip(names, HEADER.unpack_from(fragment), strict=True))
    values.update(fields)
    return HEADER.pack(*(values[name] for name in names)) + fragment[HEADER.size :]


def bad_fragments(fragment: bytes) -> dict[str, bytes]:
    info = fragment_info(fragment)
    return {
        "wrong magic": patched(fragment, magic=b"XXXX"),
        "newer version": patched(fragment, version=2),
        "unknown flag": patched(fragment, flags=0x80),
        "k of 0": patched(fragment, k=0),
        "k above n": patched(fragment, k=info.n + 1),
        "n above 64": patched(fragment, n=65, k=info.k),
        "index not below n": patched(fragment, index=info.n),
        "size above the largest chunk": patched(fragment, size=MAX_PLAINTEXT + 1),
        "length that is not size + tag": patched(fragment, length=info.length + 1),
        "a nonce on a stored chunk": patched(fragment, nonce=b"\x01" * 12),
        "compressed flag on random data": patched(fragment, flags=codec.FLAG_COMPRESSED),
        "truncated share": fragment[:-1],
        "extended share": fragment + b"\0",
        "truncated header": fragment[: HEADER.size - 1],
        "nothing": b"",
    }


def test_malformed_headers_are_refused_with_the_reason(keys: DataKeys) -> None:
    encoded = encode_chunk(keys, randomly(1000), 2, 4)
    for case, fragment in bad_fragments(encoded.fragments[0]).items():
        with pytest.raises(MalformedFragment):
            fragment_info(fragment)
            pytest.fail(f"{case} accepted")
        with pytest.raises(MalformedFragment):
            decode_chunk(keys, encoded.chunk_id, {0: fragment, 1: encoded.fragments[1]})


def test_a_fragment_given_under_another_index_is_refused(keys: DataKeys) -> None:
    encoded = encode_chunk(keys, randomly(1000), 2, 4)
    with pytest.raises(MalformedFragment, match="given as 2 says it is 0"):
        decode_chunk(keys, encoded.chunk_id, {2: encoded.fragments[0], 1: encoded.fragments[1]})


def test_a_compressed_frame_larger_than_the_recorded_size_is_refused() -> None:
    frame = zstandard.ZstdCompressor().compress(b"\0" * 1_000_000)
    with pytest.raises(ChunkCorrupt, match="wrong size"):
        codec._decompressed(b"\0" * 32, frame, 1000)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 1_000_000)
    with pytest.raises(ChunkCorrupt):
        codec._decompressed(b"\0" * 32, unsized, 1000)


@pytest.mark.parametrize("k,n", [(1, 2), (2, 4)])
def test_no_fragment_contains_the_plaintext(keys: DataKeys, k: int, n: int) -> None:
    stored = randomly(50_000)[:25_000] + MARKER + randomly(50_000)[25_000:]
    compressed = MARKER * 1000 + text(50_000)
    for plaintext in (stored, compressed):
        encoded = encode_chunk(keys, plaintext, k, n)
        assert all(MARKER not in fragment for fragment in encoded.fragments)


def test_bad_arguments_are_refused(keys: DataKeys) -> None:
    for k, n in ((0, 2), (3, 2), (2, 65), (1.0, 2)):
        with pytest.raises(ValueError, match="expected 1 <= k <= n <= 64"):
            encode_chunk(keys, b"data", k, n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds"):
        encode_chunk(keys, bytes(MAX_PLAINTEXT + 1), 1, 2)
    with pytest.raises(ValueError, match="32 bytes"):
        encode_chunk(keys, b"data", 1, 2, chunk_id=b"short")


def test_keys_are_never_shown(keys: DataKeys) -> None:
    assert keys.data.hex() not in repr(keys) and str(keys.data) not in repr(keys)


def test_eight_threads_encode_and_decode_at_once(keys: DataKeys) -> None:
    plaintexts = [
        text(400_000, seed) if seed % 2 else randomly(400_000, seed) for seed in range(16)
    ]
    expected = [encode_chunk(keys, plaintext, 4, 7) for plaintext in plaintexts]

    def round_trip(seed: int) -> tuple[codec.EncodedChunk, bytes]:
        encoded = encode_chunk(keys, plaintexts[seed], 4, 7)
        given_ = {i: encoded.fragments[i] for i in range(seed % 4, seed % 4 + 4)}
        return encoded, decode_chunk(keys, encoded.chunk_id, given_)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(round_trip, [seed % 16 for seed in range(64)]))
    for seed, (encoded, restored) in enumerate(results):
        assert encoded == expected[seed % 16]
        assert restored == plaintexts[seed % 16]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fragment_info_of_any_bytes_is_a_header_or_malformed(data: bytes) -> None:
    try:
        header = fragment_info(data)
    except MalformedFragment:
        return
    assert len(data) == HEADER.size + header.share_size


@pytest.fixture(scope="module")
def small_chunk(keys: DataKeys) -> codec.EncodedChunk:
    encoded = encode_chunk(keys, text(3001), 2, 4)
    assert fragment_info(encoded.fragments[0]).length % 2 == 1  # so the last share has padding
    return encoded


def test_the_padding_of_the_last_share_counts(
    keys: DataKeys, small_chunk: codec.EncodedChunk
) -> None:
    for index in range(4):
        fragment = bytearray(small_chunk.fragments[index])
        fragment[-1] ^= 1  # the padding byte of share 1, or what rebuilds it
        given_ = {index: bytes(fragment), (index + 1) % 4: small_chunk.fragments[(index + 1) % 4]}
        with pytest.raises(ChunkCorrupt):
            decode_chunk(keys, small_chunk.chunk_id, given_)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1999), st.integers(1, 255), st.integers(0, 3))
def test_altered_fragments_never_decode_to_other_plaintext(
    keys: DataKeys, small_chunk: codec.EncodedChunk, offset: int, mask: int, index: int
) -> None:
    """Every byte of a fragment counts, the padding of the last share included."""
    encoded = small_chunk
    fragment = bytearray(encoded.fragments[index])
    fragment[offset % len(fragment)] ^= mask
    given_ = {index: bytes(fragment), (index + 1) % 4: encoded.fragments[(index + 1) % 4]}
    with pytest.raises(CodecError):
        decode_chunk(keys, encoded.chunk_id, given_)
