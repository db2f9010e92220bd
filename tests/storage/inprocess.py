"""The backup pipeline without a network: chunks encoded with the real codec and their fragments
kept in a directory, one file per fragment. The unit tests of `bitdust.storage.backup` drive it,
and the benchmarks compare the networked upload with it (the same work minus the network)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.storage import codec
from bitdust.storage.catalogue import Catalogue

SUPPLIERS = ("http://host-a.com/alice.xml", "http://host-b.com/bob.xml",
             "http://host-c.com/carl.xml", "http://host-d.com/dave.xml")  # fmt: skip


class InProcessPlacer:
    """A ChunkPlacer whose "suppliers" are directories under ``root``."""

    def __init__(self, root: Path, catalogue: Catalogue, k: int = 2, n: int = 4) -> None:
        self.root = root
        self.catalogue = catalogue
        self.k, self.n = k, n
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.keys = codec.DataKeys.from_identity_key(key)
        for index in range(n):
            (root / str(index)).mkdir(parents=True, exist_ok=True)
        catalogue.set_suppliers(SUPPLIERS[:n], 1 << 30)
        self.sent = 0

    def path(self, index: int, fragment_id: bytes) -> Path:
        return self.root / str(index) / fragment_id.hex()

    async def store_chunk(self, plaintext: bytes) -> tuple[bytes, int]:
        chunk_id = await asyncio.to_thread(self.keys.chunk_id_of, plaintext)
        if self.catalogue.has_chunk(chunk_id):
            return chunk_id, 0
        encoded = await asyncio.to_thread(
            codec.encode_chunk, self.keys, plaintext, self.k, self.n, chunk_id
        )
        placements = []
        for index, fragment in enumerate(encoded.fragments):
            fragment_id = self.keys.fragment_id_of(chunk_id, index)
            await asyncio.to_thread(self.path(index, fragment_id).write_bytes, fragment)
            placements.append((index, SUPPLIERS[index], fragment_id))
        sent = sum(map(len, encoded.fragments))
        self.sent += sent
        await asyncio.to_thread(
            self.catalogue.add_chunk,
            chunk_id,
            encoded.size,
            len(encoded.fragments[0]),
            self.k,
            self.n,
            placements,
        )
        return chunk_id, sent

    async def load_chunk(self, chunk_id: bytes) -> bytes:
        fragments = {}
        for placement in self.catalogue.placements(chunk_id):
            path = self.path(placement.index, placement.fragment_id)
            if path.exists() and len(fragments) < self.k:
                fragments[placement.index] = path.read_bytes()
        return await asyncio.to_thread(codec.decode_chunk, self.keys, chunk_id, fragments)
