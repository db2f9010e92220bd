"""The lookup object on its own: what it keeps of the records peers return."""

from __future__ import annotations

from bitdust.dht.lookup import Lookup, LookupMode
from bitdust.dht.records import owned_key, sign_record
from bitdust.dht.schemes import Ed25519Signer

NOW = 1_800_000_000


def test_records_are_kept_per_signer_up_to_the_cap_but_never_crowd_out_the_owner() -> None:
    owner = Ed25519Signer.generate()
    key = owned_key(owner.public_key, b"suppliers")
    lookup = Lookup(1, key, LookupMode.VALUE, k=8, alpha=3)
    for _ in range(20):  # squatters' unnamed records under the owner's key arrive first
        lookup.offer(sign_record(Ed25519Signer.generate(), key, b"junk", NOW, 60), 16)
    assert len(lookup.records) == 16
    mine = sign_record(owner, key, b"alice,carol", NOW, 60, name=b"suppliers")
    lookup.offer(mine, 16)
    assert lookup.records[owner.public_key] == mine
    newer = sign_record(owner, key, b"alice,dave", NOW + 1, 60, name=b"suppliers")
    lookup.offer(newer, 16)
    lookup.offer(mine, 16)
    assert lookup.records[owner.public_key] == newer
