"""The catalogue's off-site copies: a manifest read back from a supplier is trusted only when it
decrypts under this identity's catalogue key for the slot it was read from and every field is
well formed; the bookkeeping of the two slots never writes over the newest copy and deletes
only the chunks no kept copy uses."""

from __future__ import annotations

import hashlib
import os

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bitdust.storage import offsite
from bitdust.storage.offsite import Copies, Manifest, ManifestRefused

KEY = bytes(range(32))
SUPPLIERS = ("http://host-a.com:8084/alice.xml", "http://host-b.com:8084/bob.xml")


def chunk(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def manifest(generation: int, *names: str) -> Manifest:
    chunks = tuple((chunk(name), 1000) for name in names)
    return Manifest(generation, 1000 * len(names), bytes(32), 1, SUPPLIERS, chunks)


def sealed_fields(fields: dict, slot: int = 0) -> bytes:
    """``fields`` sealed as a manifest is, whatever they hold."""
    nonce = os.urandom(offsite.NONCE_SIZE)
    aad = offsite.MANIFEST_AAD + bytes([slot])
    return nonce + AESGCM(KEY).encrypt(nonce, msgpack.packb(fields), aad)


def test_a_manifest_unseals_to_itself_from_its_slot_only() -> None:
    stored = manifest(7, "a", "b")
    for slot in range(offsite.SLOTS):
        assert offsite.unseal(KEY, slot, offsite.seal(KEY, slot, stored)) == stored
    with pytest.raises(ManifestRefused, match="does not decrypt"):
        offsite.unseal(KEY, 1, offsite.seal(KEY, 0, stored))  # moved to the other slot
    with pytest.raises(ManifestRefused, match="does not decrypt"):
        offsite.unseal(bytes(32), 0, offsite.seal(KEY, 0, stored))  # another identity's
    assert offsite.slot_id(KEY, 0) != offsite.slot_id(KEY, 1) != offsite.slot_id(bytes(32), 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "impossible size"),
        (bytes(offsite.MAX_MANIFEST + 1), "impossible size"),
        (os.urandom(200), "does not decrypt"),
    ],
)
def test_bytes_that_are_no_sealed_manifest_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ManifestRefused, match=reason):
        offsite.unseal(KEY, 0, data)


def test_a_flipped_bit_is_refused() -> None:
    data = bytearray(offsite.seal(KEY, 0, manifest(1, "a")))
    data[-20] ^= 1
    with pytest.raises(ManifestRefused, match="does not decrypt"):
        offsite.unseal(KEY, 0, bytes(data))


GOOD = {
    "v": offsite.MANIFEST_VERSION,
    "generation": 3,
    "size": 1000,
    "sha256": bytes(32),
    "k": 1,
    "suppliers": list(SUPPLIERS),
    "chunks": [[chunk("a"), 1000]],
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unknown format version"),
        ({"generation": None}, "malformed"),
        ({"generation": -1}, "malformed"),
        ({"size": 999}, "malformed"),  # not the sum of its chunks
        ({"sha256": b"short"}, "malformed"),
        ({"k": 3}, "malformed"),  # more than its suppliers
        ({"suppliers": []}, "malformed"),
        ({"suppliers": ["x" * 5000]}, "malformed"),
        ({"chunks": [[b"short", 1000]]}, "malformed"),
        ({"chunks": [[chunk("a"), 1000, 1]]}, "lacks fields"),
        ({"chunks": [[chunk("a"), 1000]] * (offsite.MAX_CHUNKS + 1)}, "impossible size|malformed"),
    ],
)
def test_a_manifest_with_a_malformed_field_is_refused(change: dict, reason: str) -> None:
    assert offsite.unseal(KEY, 0, sealed_fields(GOOD)).generation == 3
    with pytest.raises(ManifestRefused, match=reason):
        offsite.unseal(KEY, 0, sealed_fields({**GOOD, **change}))


def test_a_manifest_lacking_a_field_or_not_a_map_is_refused() -> None:
    fields = dict(GOOD)
    del fields["chunks"]
    with pytest.raises(ManifestRefused, match="lacks fields"):
        offsite.unseal(KEY, 0, sealed_fields(fields))
    with pytest.raises(ManifestRefused, match="unknown format version"):
        offsite.unseal(KEY, 0, sealed_fields([1, 2, 3]))  # type: ignore[arg-type]


def test_the_next_copy_never_goes_to_the_slot_of_the_newest() -> None:
    copies = Copies()
    assert copies.newest is None and copies.chunk_ids() == set()
    for generation in range(1, 6):
        slot = copies.next_slot()
        if copies.manifests:
            held = copies.manifests
            assert slot != max(held, key=lambda s: held[s].generation)
        copies.stored(slot, manifest(generation, f"c{generation}"))
        assert copies.newest is not None and copies.newest.generation == generation
    assert sorted(m.generation for m in copies.manifests.values()) == [4, 5]


def test_found_copies_continue_from_the_newest_whichever_slot_holds_it() -> None:
    copies = Copies.found({0: manifest(9, "a"), 1: manifest(8, "b")})
    assert copies.newest == manifest(9, "a") and copies.next_slot() == 1
    assert Copies.found({1: manifest(2, "a")}).next_slot() == 0
    assert Copies.found({}).newest is None


def test_a_copy_written_over_another_frees_only_the_chunks_no_kept_copy_uses() -> None:
    copies = Copies.found({0: manifest(1, "a", "b", "c"), 1: manifest(2, "b", "d")})
    assert copies.chunk_ids() == {chunk(n) for n in "abcd"}
    unused, stored_on = copies.stored(copies.next_slot(), manifest(3, "c", "e"))
    assert sorted(unused) == sorted([chunk("a")])  # b is kept by 2, c by 3
    assert stored_on == SUPPLIERS
    assert copies.stored(copies.next_slot(), manifest(4, "e")) == (
        [chunk("b"), chunk("d")],
        SUPPLIERS,
    )
