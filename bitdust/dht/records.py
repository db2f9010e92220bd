"""Signed DHT records: what a value is, who vouches for it and for how long.

A record binds a 20-byte key, a value, its creation and expiry times (Unix seconds: they travel
between nodes, so they are wall-clock) and an owner IDURL to the signer's public key. The signature
covers the canonical bytes of every one of those fields behind a domain-separation prefix, so a
record can neither be moved to another key nor have its lifetime stretched. Signature schemes
live in ``schemes``; a node is given the ones it accepts. Nothing here trusts its input:
``record_from_map`` validates shapes and ``RecordChecker`` the signature and times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from bitdust.dht.refusals import Refusal
from bitdust.dht.schemes import Signer, Verifier

DOMAIN = b"bitdust-dht-record-v1\x00"
KEY_SIZE = 20
MAX_SCHEME = 32
MAX_PUBLIC_KEY = 1024
MAX_SIGNATURE = 1024
MAX_OWNER = 256
MAX_NAME = 64
MAX_VALUE = 4096
OWNED_DOMAIN = b"bitdust-dht-owned-key-v1\x00"


class MalformedRecord(ValueError):
    """A record map from outside has a wrong shape; the caller drops it."""


def dht_key(name: str) -> bytes:
    """The DHT key of a human-readable name: SHA-1 of its UTF-8 bytes (160 bits, like node ids).

    Anyone may write under such a *shared* key (one record per signer)."""
    return hashlib.sha1(name.encode("utf-8")).digest()


def owned_key(public_key: bytes, name: bytes) -> bytes:
    """The DHT key of ``name`` *owned* by ``public_key`` (BitTorrent BEP 44's mutable items).

    Only records signed by that key can live there, and any node checks it from the record alone
    (the record carries ``name``): nobody can squat an identity's supplier list or adverts."""
    return hashlib.sha1(OWNED_DOMAIN + public_key + name).digest()


@dataclass(frozen=True, slots=True)
class Record:
    """One signed value under a key; ``(key, public_key)`` identifies it in a store."""

    key: bytes
    value: bytes
    created: int
    expires: int
    scheme: str
    public_key: bytes
    signature: bytes
    owner: str | None = None
    name: bytes | None = None  # set on records under an owned key: owned_key(public_key, name)

    def signed_bytes(self) -> bytes:
        return canonical_bytes(
            self.key,
            self.value,
            self.created,
            self.expires,
            self.scheme,
            self.public_key,
            self.owner,
            self.name,
        )

    def to_map(self) -> dict[str, Any]:
        """The msgpack map form used on the wire and in the database."""
        out: dict[str, Any] = {
            "k": self.key,
            "v": self.value,
            "c": self.created,
            "x": self.expires,
            "s": self.scheme,
            "p": self.public_key,
            "g": self.signature,
        }
        if self.owner is not None:
            out["o"] = self.owner
        if self.name is not None:
            out["n"] = self.name
        return out

    @property
    def size(self) -> int:
        """Bytes charged against store limits."""
        extra = (len(self.owner) if self.owner else 0) + (len(self.name) if self.name else 0)
        return len(self.value) + len(self.public_key) + len(self.signature) + extra + 64


def canonical_bytes(
    key: bytes,
    value: bytes,
    created: int,
    expires: int,
    scheme: str,
    public_key: bytes,
    owner: str | None,
    name: bytes | None = None,
) -> bytes:
    """Deterministic bytes that a signature covers (msgpack of a fixed-order array). ``name``
    adds an eighth element, so records of shared keys sign exactly what they always did."""
    body: list[Any] = [key, value, created, expires, scheme, public_key, owner]
    if name is not None:
        body.append(name)
    return DOMAIN + msgpack.packb(body, use_bin_type=True)


def _bytes(obj: dict[str, Any], name: str, lo: int, hi: int) -> bytes:
    v = obj.get(name)
    if not isinstance(v, bytes) or not lo <= len(v) <= hi:
        raise MalformedRecord(f"field {name!r}: expected {lo}..{hi} bytes")
    return v


def _int(obj: dict[str, Any], name: str) -> int:
    v = obj.get(name)
    if type(v) is not int or not 0 <= v < 2**40:
        raise MalformedRecord(f"field {name!r}: expected a timestamp")
    return v


def record_from_map(obj: Any, max_value: int = MAX_VALUE) -> Record:
    """Validate a record map's shape (not its signature) and build a ``Record``."""
    if not isinstance(obj, dict) or not set(obj) <= {"k", "v", "c", "x", "s", "p", "g", "o", "n"}:
        raise MalformedRecord("record: expected a map with known fields")
    scheme = obj.get("s")
    if not isinstance(scheme, str) or not 1 <= len(scheme) <= MAX_SCHEME:
        raise MalformedRecord("field 's': expected a scheme name")
    owner = obj.get("o")
    if owner is not None and (not isinstance(owner, str) or not 1 <= len(owner) <= MAX_OWNER):
        raise MalformedRecord("field 'o': expected an IDURL string")
    return Record(
        key=_bytes(obj, "k", KEY_SIZE, KEY_SIZE),
        value=_bytes(obj, "v", 0, max_value),
        created=_int(obj, "c"),
        expires=_int(obj, "x"),
        scheme=scheme,
        public_key=_bytes(obj, "p", 1, MAX_PUBLIC_KEY),
        signature=_bytes(obj, "g", 1, MAX_SIGNATURE),
        owner=owner,
        name=_bytes(obj, "n", 1, MAX_NAME) if "n" in obj else None,
    )


@dataclass(frozen=True, slots=True)
class RecordChecker:
    """The rules a record must meet to be stored or reported: shape, times and signature.

    ``verifiers`` maps the schemes this node accepts to their verifier; it is given when the
    node is built, so every node of a process accepts the same schemes whatever else runs.
    """

    verifiers: Mapping[str, Verifier]
    max_age: int
    clock_skew: int

    def verify_signature(self, record: Record) -> bool:
        """True when the record's scheme is accepted here and its signature checks out."""
        verify = self.verifiers.get(record.scheme)
        if verify is None:
            return False
        try:
            return bool(verify(record.public_key, record.signed_bytes(), record.signature))
        except Exception:  # a verifier bug or odd key must read as "invalid", never crash the node
            return False

    def check_fields(self, record: Record, wall_now: float) -> Refusal | None:
        """The cheap rules (key, size, times, scheme known), checked before any signature."""
        if len(record.key) != KEY_SIZE:
            return Refusal.BAD_KEY
        if len(record.value) > MAX_VALUE:
            return Refusal.VALUE_TOO_LARGE
        if record.created > wall_now + self.clock_skew:
            return Refusal.CREATED_IN_FUTURE
        if record.expires <= wall_now:
            return Refusal.EXPIRED
        if record.expires <= record.created or record.expires - record.created > self.max_age:
            return Refusal.LIFETIME_TOO_LONG
        if record.scheme not in self.verifiers:
            return Refusal.INVALID_SIGNATURE
        if record.name is not None and record.key != owned_key(record.public_key, record.name):
            return Refusal.NOT_OWNER
        return None

    def check(self, record: Record, wall_now: float) -> Refusal | None:
        """Why ``record`` is unacceptable at ``wall_now``, or None when it is fine."""
        refusal = self.check_fields(record, wall_now)
        if refusal is None and not self.verify_signature(record):
            return Refusal.INVALID_SIGNATURE
        return refusal


def sign_record(
    signer: Signer,
    key: bytes,
    value: bytes,
    created: int,
    age: int,
    owner: str | None = None,
    name: bytes | None = None,
) -> Record:
    """Make a record valid from ``created`` for ``age`` seconds, signed by ``signer``; with
    ``name``, under the signer's owned key of that name (``key`` must be it)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"key: expected {KEY_SIZE} bytes, got {len(key)}")
    if age <= 0:
        raise ValueError(f"age={age}: expected > 0 seconds")
    if name is not None and key != owned_key(signer.public_key, name):
        raise ValueError("key: not the signer's owned key of this name")
    expires = created + age
    data = canonical_bytes(
        key, value, created, expires, signer.scheme, signer.public_key, owner, name
    )
    return Record(
        key=key,
        value=value,
        created=created,
        expires=expires,
        scheme=signer.scheme,
        public_key=signer.public_key,
        signature=signer.sign(data),
        owner=owner,
        name=name,
    )
