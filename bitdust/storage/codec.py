"""One chunk in, N self-describing fragments out (any k of them restore it), and back (DESIGN §10).

Per chunk: zstandard (only when a sample shows it pays) → AES-256-GCM under a key derived from the
data key and the chunk id → zfec k-of-n over the ciphertext. Fragment i goes to supplier i, which
sees only a header and a share of ciphertext. Pure CPU, no I/O; every function is thread-safe and
meant to run in worker threads (zfec, AES-GCM, hashing and zstd release the GIL).

Fragments come back from untrusted suppliers: their headers are checked field by field before use,
and nothing is returned unless the GCM tag verifies. A zstandard compressor or decompressor is never
shared between threads (two threads on one ``ZstdCompressor`` segfaulted here): each thread has its
own.

Fragment layout (big-endian), ``HEADER`` then the share::

    magic "BDCF" | version u8 | flags u8 | k u8 | n u8 | index u8
    | size u32 (plaintext) | length u32 (ciphertext with its tag) | nonce 12 bytes

A fragment names neither the chunk nor the account; the sizes are what any share's length tells
a supplier anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bitdust.identity.keys import derive_key
from bitdust.storage.chunker import MAX_CHUNK

if TYPE_CHECKING:
    import zstandard

MAGIC = b"BDCF"
VERSION = 1
MAX_SHARES = 64
MAX_PLAINTEXT = MAX_CHUNK
ID_SIZE = 32
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER = struct.Struct(">4sBBBBBII12s")

FLAG_COMPRESSED = 0x01
_KNOWN_FLAGS = FLAG_COMPRESSED
_ZERO_NONCE = bytes(NONCE_SIZE)

#: Compression is tried on the whole chunk only when this much of its start shrinks enough.
COMPRESSION_SAMPLE = 64 * 1024
COMPRESSION_PAYS = 0.9
ZSTD_LEVEL = 3


class CodecError(Exception):
    """Fragments could not be turned back into a chunk; the message says why."""


class MalformedFragment(CodecError):
    """A fragment's header is not one this program wrote, or disagrees with the others."""


class ChunkCorrupt(CodecError):
    """The fragments decode, but their content fails authentication: altered, or another chunk's."""


class NotEnoughFragments(CodecError):
    """Fewer than k fragments were given."""


@dataclass(frozen=True)
class DataKeys:
    """The account's storage keys, every one derived from the identity key (never shown in repr)."""

    chunk_id: bytes = field(repr=False)
    data: bytes = field(repr=False)
    fragment_id: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if any(len(key) != KEY_SIZE for key in (self.chunk_id, self.data, self.fragment_id)):
            raise ValueError(f"storage keys are {KEY_SIZE} bytes each")

    @classmethod
    def from_identity_key(cls, private_key: rsa.RSAPrivateKey) -> DataKeys:
        return cls(
            chunk_id=derive_key(private_key, "storage/chunk-id/v1"),
            data=derive_key(private_key, "storage/data/v1"),
            fragment_id=derive_key(private_key, "storage/fragment-id/v1"),
        )

    def chunk_id_of(self, plaintext: bytes | memoryview) -> bytes:
        """The chunk's id: HMAC-SHA256 of its plaintext, so the same chunk is stored once per
        account while ids reveal nothing to anyone without the key."""
        return hmac.new(self.chunk_id, plaintext, hashlib.sha256).digest()

    def fragment_id_of(self, chunk_id: bytes, index: int) -> bytes:
        """The name fragment ``index`` of the chunk is stored under: suppliers comparing the ids
        they hold cannot tell which belong to the same chunk."""
        _check_chunk_id(chunk_id)
        if not 0 <= index < MAX_SHARES:
            raise ValueError(f"fragment index {index} is out of range (0-{MAX_SHARES - 1})")
        return hmac.new(self.fragment_id, chunk_id + bytes([index]), hashlib.sha256).digest()


@dataclass(frozen=True)
class FragmentHeader:
    """What a fragment says about itself; every field range-checked by :func:`fragment_info`."""

    version: int
    compressed: bool
    k: int
    n: int
    index: int
    size: int
    length: int
    nonce: bytes

    @property
    def share_size(self) -> int:
        return -(-self.length // self.k)

    @property
    def flags(self) -> int:
        return FLAG_COMPRESSED if self.compressed else 0

    def pack(self) -> bytes:
        fields = (self.k, self.n, self.index, self.size, self.length, self.nonce)
        return HEADER.pack(MAGIC, self.version, self.flags, *fields)

    def same_chunk(self, other: FragmentHeader) -> bool:
        """Whether two fragments can be shares of one chunk (every field but the index agrees)."""
        return replace(other, index=self.index) == self

    def associated_data(self, chunk_id: bytes) -> bytes:
        """What the GCM tag binds besides the ciphertext: the chunk id, format and flags, size."""
        return MAGIC + bytes([self.version, self.flags]) + self.size.to_bytes(4, "big") + chunk_id


@dataclass(frozen=True)
class EncodedChunk:
    chunk_id: bytes
    size: int  # of the plaintext
    compressed: bool
    fragments: list[bytearray]  # n of them; fragment i (for supplier i) at position i


def encode_chunk(
    keys: DataKeys, plaintext: bytes, k: int, n: int, chunk_id: bytes | None = None
) -> EncodedChunk:
    """Compress (if it pays), encrypt and erasure-code one chunk into ``n`` fragments.

    ``chunk_id`` must be ``keys.chunk_id_of(plaintext)``; pass it when already known to save
    hashing the chunk twice. The same plaintext always gives the same fragments.
    """
    if not (type(k) is int and type(n) is int and 1 <= k <= n <= MAX_SHARES):
        raise ValueError(f"k={k!r} of n={n!r} fragments: expected 1 <= k <= n <= {MAX_SHARES}")
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"a chunk of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}")
    if chunk_id is None:
        chunk_id = keys.chunk_id_of(plaintext)
    _check_chunk_id(chunk_id)
    packed = _compressed(plaintext)
    payload = plaintext if packed is None else packed
    # The key is unique to the chunk id, that is to the plaintext, so a fixed nonce is safe for a
    # plaintext stored as it is: one key never encrypts two different messages. A compressed form
    # may differ for the same plaintext (another zstd version), so its nonce is a keyed hash of it.
    nonce = _ZERO_NONCE if packed is None else _nonce_of(keys, chunk_id, packed)
    header = FragmentHeader(
        version=VERSION,
        compressed=packed is not None,
        k=k,
        n=n,
        index=0,
        size=len(plaintext),
        length=len(payload) + TAG_SIZE,
        nonce=nonce,
    )
    import zfec  # at first use: an idle node goes without its memory

    # Each fragment is allocated once, its header then its share. The ciphertext and its tag
    # are written straight into the k primary shares (the zeros after them pad the last), and
    # each parity share is copied into its fragment as zfec makes it: a chunk being encoded
    # holds its fragments and one share besides, not a joined ciphertext and parity as well.
    fragments = [bytearray(HEADER.size + header.share_size) for _ in range(n)]
    shares = []
    for index, fragment in enumerate(fragments):
        fragment[: HEADER.size] = replace(header, index=index).pack()
        shares.append(memoryview(fragment)[HEADER.size :])
    primary = shares[:k]
    encryptor = Cipher(algorithms.AES(_key_of(keys, chunk_id)), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(header.associated_data(chunk_id))
    source, offset = memoryview(payload), 0
    for out in _spans(primary, 0, len(payload)):
        offset += encryptor.update_into(source[offset : offset + len(out)], out)
    encryptor.finalize()
    written = 0
    for out in _spans(primary, len(payload), header.length):
        out[:] = encryptor.tag[written : written + len(out)]
        written += len(out)
    encoder = zfec.Encoder(k, n)
    for index in range(k, n):
        (parity,) = encoder.encode(primary, (index,))
        shares[index][:] = parity
    return EncodedChunk(chunk_id, len(plaintext), header.compressed, fragments)


def decode_chunk(
    keys: DataKeys, chunk_id: bytes, fragments: Mapping[int, bytes]
) -> bytes | bytearray:
    """The chunk's plaintext from any k of its fragments, keyed by index.

    Every header given is checked; the shares of the k lowest indices are used.

    Raises MalformedFragment for a bad header or headers that disagree, NotEnoughFragments for
    fewer than k, ChunkCorrupt if the content fails authentication.
    """
    header, primary = _primary_shares(fragments)
    payload = _decrypt(keys, chunk_id, header, primary)
    if not header.compressed:
        return payload
    return _decompressed(chunk_id, payload, header.size)


def share_for(keys: DataKeys, chunk_id: bytes, fragments: Mapping[int, bytes], index: int) -> bytes:
    """Rebuild fragment ``index`` from any k of the chunk's fragments, for a new supplier.

    The content is authenticated first, so a corrupt share is never spread to a new supplier.
    """
    header, primary = _primary_shares(fragments)
    if not 0 <= index < header.n:
        raise ValueError(f"fragment index {index} is out of range (0-{header.n - 1})")
    _decrypt(keys, chunk_id, header, primary)
    import zfec  # at first use: an idle node goes without its memory

    (share,) = zfec.Encoder(header.k, header.n).encode(primary, (index,))
    return b"".join((replace(header, index=index).pack(), share))


def fragment_info(fragment: bytes | memoryview) -> FragmentHeader:
    """Parse and check a fragment's header; raises MalformedFragment and nothing else."""
    if len(fragment) < HEADER.size:
        raise MalformedFragment(f"truncated fragment: {len(fragment)} bytes, less than a header")
    magic, version, flags, k, n, index, size, length, nonce = HEADER.unpack_from(fragment)
    if magic != MAGIC:
        raise MalformedFragment("not a bitdust chunk fragment (wrong magic)")
    if version != VERSION:
        raise MalformedFragment(f"fragment format version {version}: this program reads {VERSION}")
    if flags & ~_KNOWN_FLAGS:
        raise MalformedFragment(f"unknown fragment flags {flags:#04x}")
    if not 1 <= k <= n <= MAX_SHARES:
        raise MalformedFragment(f"k={k} of n={n}: expected 1 <= k <= n <= {MAX_SHARES}")
    if index >= n:
        raise MalformedFragment(f"fragment index {index} is not below n={n}")
    if size > MAX_PLAINTEXT:
        raise MalformedFragment(f"chunk size {size} exceeds {MAX_PLAINTEXT}")
    compressed = bool(flags & FLAG_COMPRESSED)
    if compressed:
        if not TAG_SIZE < length < size + TAG_SIZE:
            raise MalformedFragment(f"ciphertext of {length} bytes for {size} compressed bytes")
    elif length != size + TAG_SIZE or nonce != _ZERO_NONCE:
        raise MalformedFragment(f"ciphertext of {length} bytes for {size} stored bytes")
    header = FragmentHeader(VERSION, compressed, k, n, index, size, length, nonce)
    if len(fragment) - HEADER.size != header.share_size:
        raise MalformedFragment(
            f"share of {len(fragment) - HEADER.size} bytes, expected {header.share_size}"
        )
    return header


# --- internals -----------------------------------------------------------------------------------


def _check_chunk_id(chunk_id: bytes) -> None:
    if not isinstance(chunk_id, bytes) or len(chunk_id) != ID_SIZE:
        raise ValueError(f"a chunk id is {ID_SIZE} bytes")


def _key_of(keys: DataKeys, chunk_id: bytes) -> bytes:
    return hmac.new(keys.data, b"aes-256-gcm" + chunk_id, hashlib.sha256).digest()


def _nonce_of(keys: DataKeys, chunk_id: bytes, payload: bytes) -> bytes:
    digest = hmac.new(keys.data, b"aes-256-gcm-nonce" + chunk_id, hashlib.sha256)
    digest.update(payload)
    return digest.digest()[:NONCE_SIZE]


def _primary_shares(
    fragments: Mapping[int, bytes],
) -> tuple[FragmentHeader, tuple[bytes | memoryview, ...]]:
    """Check every fragment given, then zfec-decode k of them into the k primary shares."""
    headers: dict[int, FragmentHeader] = {}
    for index, fragment in fragments.items():
        header = fragment_info(fragment)
        if header.index != index:
            raise MalformedFragment(f"fragment given as {index} says it is {header.index}")
        headers[index] = header
    if not headers:
        raise NotEnoughFragments("no fragments given")
    first = next(iter(headers.values()))
    for index, header in headers.items():
        if not first.same_chunk(header):
            raise MalformedFragment(f"fragment {index} is not of the same chunk as the others")
    if len(headers) < first.k:
        raise NotEnoughFragments(f"{len(headers)} fragments given, {first.k} needed")
    chosen = tuple(sorted(headers)[: first.k])  # primary shares first: cheapest to decode
    shares = tuple(memoryview(fragments[index])[HEADER.size :] for index in chosen)
    import zfec  # at first use: an idle node goes without its memory

    return first, tuple(zfec.Decoder(first.k, first.n).decode(shares, chosen))


def _decrypt(
    keys: DataKeys,
    chunk_id: bytes,
    header: FragmentHeader,
    primary: tuple[bytes | memoryview, ...],
) -> bytearray:
    """The chunk's payload, decrypted share by share into one buffer (joining the shares first
    would cost a copy of the chunk, and page faults for its fresh memory)."""
    _check_chunk_id(chunk_id)
    shares = [memoryview(share) for share in primary]
    total = sum(len(share) for share in shares)
    body = header.length - TAG_SIZE
    if body < 0:
        raise _unauthentic(chunk_id)
    # the padding is zeros, so every byte of a fragment counts
    if any(any(piece) for piece in _spans(shares, header.length, total)):
        raise ChunkCorrupt(f"chunk {chunk_id.hex()}: the padding of its last share is altered")
    decryptor = Cipher(algorithms.AES(_key_of(keys, chunk_id)), modes.GCM(header.nonce)).decryptor()
    decryptor.authenticate_additional_data(header.associated_data(chunk_id))
    payload = bytearray(body)
    with memoryview(payload) as out:
        written = 0
        for piece in _spans(shares, 0, body):
            written += decryptor.update_into(piece, out[written:])
    try:
        decryptor.finalize_with_tag(b"".join(_spans(shares, body, header.length)))
    except InvalidTag:
        raise _unauthentic(chunk_id) from None
    return payload


def _spans(shares: list[memoryview], start: int, end: int) -> Iterator[memoryview]:
    """The bytes [start, end) of the shares laid end to end, share by share, uncopied."""
    offset = 0
    for share in shares:
        low, high = max(start - offset, 0), min(end - offset, len(share))
        if low < high:
            yield share[low:high]
        offset += len(share)


def _unauthentic(chunk_id: bytes) -> ChunkCorrupt:
    return ChunkCorrupt(
        f"chunk {chunk_id.hex()}: its fragments fail authentication (altered, or mixed with"
        " another chunk's)"
    )


_per_thread = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_per_thread, "compressor"):
        import zstandard  # at first use: an idle node goes without its memory

        _per_thread.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return _per_thread.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_per_thread, "decompressor"):
        import zstandard  # at first use: an idle node goes without its memory

        _per_thread.decompressor = zstandard.ZstdDecompressor()
    return _per_thread.decompressor


def _compressed(plaintext: bytes | memoryview) -> bytes | None:
    """The zstandard form of the chunk if a sample shows it pays and it is smaller, else None."""
    compressor = _compressor()
    sample = memoryview(plaintext)[:COMPRESSION_SAMPLE]
    if len(compressor.compress(sample)) > COMPRESSION_PAYS * len(sample):
        return None
    packed = compressor.compress(plaintext)
    return packed if len(packed) < len(plaintext) else None


def _decompressed(chunk_id: bytes, payload: bytes | bytearray, size: int) -> bytes:
    # The payload is authenticated, but a frame header's content size is still never trusted for
    # an allocation: it must be the recorded size, and the output is bounded by it.
    import zstandard  # at first use: an idle node goes without its memory

    try:
        if zstandard.frame_content_size(payload) not in (size, -1):
            raise ChunkCorrupt(f"chunk {chunk_id.hex()}: compressed frame of the wrong size")
        plaintext = _decompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise ChunkCorrupt(f"chunk {chunk_id.hex()}: cannot decompress ({exc})") from None
    if len(plaintext) != size:
        raise ChunkCorrupt(f"chunk {chunk_id.hex()}: {len(plaintext)} bytes, expected {size}")
    return plaintext
