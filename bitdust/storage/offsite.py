"""The catalogue kept off-site: after every change an encrypted copy goes to the suppliers, so
that a lost machine recovers every file from the key backup alone.

A copy is the catalogue's SQLite bytes cut into chunks and stored like file data (encrypted and
erasure-coded k-of-N under the data keys), plus a small **manifest** naming those chunks, the
catalogue's generation and where the fragments lie. The manifest is encrypted under the catalogue
key (derived from the identity key) and written whole to every supplier, alternately in one of two
slots whose fragment ids derive from that key: the slot being written never holds the newest good
copy, so a crash in the middle of an update leaves the previous copy intact. Recovery reads both
slots from any supplier, takes the newest manifest that decrypts, and rebuilds the catalogue from
any k fragments of each chunk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bitdust.storage.suppliers import MAX_IDURL
from bitdust.storage.wire import ID_SIZE

MANIFEST_VERSION = 1
SLOTS = 2
MANIFEST_AAD = b"bitdust/catalogue-manifest/v1:"
MAX_MANIFEST = 1024 * 1024
MAX_CHUNKS = 16_384  # 64 GiB of catalogue at the average chunk size: far beyond any real one
NONCE_SIZE = 12


class ManifestRefused(ValueError):
    """A manifest read back does not decrypt or is malformed; the message says how."""


@dataclass(frozen=True)
class Manifest:
    """One off-site copy of the catalogue: its generation, its bytes' size and SHA-256, the
    erasure code and suppliers it was stored with, and its chunks (id, plaintext size)."""

    generation: int
    size: int
    sha256: bytes
    k: int
    suppliers: tuple[str, ...]
    chunks: tuple[tuple[bytes, int], ...]

    @property
    def n(self) -> int:
        return len(self.suppliers)


@dataclass
class Copies:
    """The copies of the catalogue the suppliers hold, by slot, as this node last found or
    stored them: where the next copy goes and what it leaves unused. Bookkeeping only; the
    customer service does the I/O."""

    manifests: dict[int, Manifest] = field(default_factory=dict)
    last_slot: int = 0  # the slot written last: the newest copy's

    @classmethod
    def found(cls, manifests: dict[int, Manifest]) -> Copies:
        """The copies read back from the suppliers, the newest taken for the last written."""
        newest = max(manifests, key=lambda slot: manifests[slot].generation, default=0)
        return cls(dict(manifests), newest)

    @property
    def newest(self) -> Manifest | None:
        return self.manifests.get(self.last_slot)

    def chunk_ids(self) -> set[bytes]:
        """The chunks the copies use: a new copy sends only the others."""
        return {chunk_id for manifest in self.manifests.values() for chunk_id, _ in manifest.chunks}

    def next_slot(self) -> int:
        """Where the next copy goes: never the slot of the newest, so that a crash in the
        middle of writing it leaves that one whole."""
        return (self.last_slot + 1) % SLOTS

    def stored(self, slot: int, manifest: Manifest) -> tuple[list[bytes], tuple[str, ...]]:
        """Record ``manifest`` as written to ``slot``; the chunks only the copy it overwrote
        used, to delete, and the suppliers that copy was stored on."""
        replaced = self.manifests.get(slot)
        self.manifests[slot], self.last_slot = manifest, slot
        if replaced is None:
            return [], ()
        kept = self.chunk_ids()
        return [c for c, _ in replaced.chunks if c not in kept], replaced.suppliers


def slot_id(catalogue_key: bytes, slot: int) -> bytes:
    """The fragment id of manifest slot ``slot`` (the same on every supplier)."""
    return hmac.new(catalogue_key, b"manifest-slot" + bytes([slot]), hashlib.sha256).digest()


def seal(catalogue_key: bytes, slot: int, manifest: Manifest) -> bytes:
    """The manifest encrypted for ``slot`` (the slot is authenticated: a copy moved to the
    other slot does not decrypt)."""
    plaintext = msgpack.packb(
        {
            "v": MANIFEST_VERSION,
            "generation": manifest.generation,
            "size": manifest.size,
            "sha256": manifest.sha256,
            "k": manifest.k,
            "suppliers": list(manifest.suppliers),
            "chunks": [[chunk_id, size] for chunk_id, size in manifest.chunks],
        }
    )
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(catalogue_key).encrypt(nonce, plaintext, MANIFEST_AAD + bytes([slot]))


def unseal(catalogue_key: bytes, slot: int, data: bytes) -> Manifest:
    """The manifest in ``data`` read from ``slot``, decrypted and checked field by field."""
    if not NONCE_SIZE + 16 <= len(data) <= MAX_MANIFEST:
        raise ManifestRefused("a catalogue manifest of an impossible size")
    try:
        plaintext = AESGCM(catalogue_key).decrypt(
            data[:NONCE_SIZE], data[NONCE_SIZE:], MANIFEST_AAD + bytes([slot])
        )
    except InvalidTag:
        raise ManifestRefused(
            "the catalogue manifest does not decrypt with this identity's key"
        ) from None
    try:
        fields: Any = msgpack.unpackb(plaintext, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ManifestRefused("the catalogue manifest is not msgpack") from None
    if not isinstance(fields, dict) or fields.get("v") != MANIFEST_VERSION:
        raise ManifestRefused("a catalogue manifest of an unknown format version")
    try:
        manifest = Manifest(
            generation=fields["generation"],
            size=fields["size"],
            sha256=fields["sha256"],
            k=fields["k"],
            suppliers=tuple(fields["suppliers"]),
            chunks=tuple((chunk_id, size) for chunk_id, size in fields["chunks"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ManifestRefused("the catalogue manifest lacks fields") from None
    if not _well_formed(manifest):
        raise ManifestRefused("the catalogue manifest has malformed fields")
    return manifest


def _well_formed(manifest: Manifest) -> bool:
    def count(value: Any) -> bool:
        return type(value) is int and 0 <= value < 2**62

    return (
        count(manifest.generation)
        and count(manifest.size)
        and isinstance(manifest.sha256, bytes)
        and len(manifest.sha256) == 32
        and 1 <= len(manifest.suppliers) <= 64
        and all(isinstance(s, str) and 0 < len(s) <= MAX_IDURL for s in manifest.suppliers)
        and type(manifest.k) is int
        and 1 <= manifest.k <= len(manifest.suppliers)
        and len(manifest.chunks) <= MAX_CHUNKS
        and all(
            isinstance(chunk_id, bytes) and len(chunk_id) == ID_SIZE and count(size)
            for chunk_id, size in manifest.chunks
        )
        and sum(size for _, size in manifest.chunks) == manifest.size
    )
