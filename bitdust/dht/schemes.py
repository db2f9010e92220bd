"""Record signature schemes: who can sign a DHT record, and how a node checks the signature.

Two schemes: Ed25519 (a node's own DHT key) and RSA-PSS over an identity key, built on
:mod:`bitdust.rsakeys` so that the key rules (allowed sizes, exponent 65537) and the PSS
parameters are those of every other part. A node accepts the schemes it is given when it is
built (:data:`STANDARD_VERIFIERS` in the product): no registry, so what a node accepts never
depends on which services happened to start. This module never imports the identity package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bitdust import keysize, rsakeys

ED25519 = "ed25519"
RSA_PSS = "rsa-pss-sha256"


class Signer(Protocol):
    """Anything that can sign records: the node's Ed25519 key, or an identity's RSA key."""

    @property
    def scheme(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    """``verify(public_key, data, signature)``: True when valid; never raises on bad input."""

    def __call__(self, public_key: bytes, data: bytes, signature: bytes, /) -> bool: ...


class Ed25519Signer:
    """The node's own DHT signing key. Its private bytes are secret: store them 0600, never log."""

    scheme = ED25519

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={self.public_key.hex()})"


def verify_ed25519(public_key: bytes, data: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


class RsaSigner:
    """Signs records with an identity's RSA key (RSA-PSS, DER public key on the record).

    The record's own domain-separated bytes are signed, so a record signature can never pass for
    an identity-document signature or the reverse. Never logs or shows the private key.
    """

    scheme = RSA_PSS

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        rsakeys.check_public_key(private_key)
        self._key = private_key
        self.public_key = rsakeys.public_key_der(private_key)

    def sign(self, data: bytes) -> bytes:
        return rsakeys.sign_pss(self._key, data)

    def __repr__(self) -> str:
        return f"RsaSigner(public key sha256 {hashlib.sha256(self.public_key).hexdigest()[:16]})"


def verify_rsa_pss(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Refuses keys :mod:`bitdust.rsakeys` refuses (size, exponent) before any RSA arithmetic."""
    try:
        key = rsakeys.load_der_public_key(public_key)
    except keysize.KeyRefused:
        return False
    return rsakeys.verify_pss(key, data, signature)


# What one verification costs, in CPU seconds, measured here (x86-64, OpenSSL 3, e = 65537):
# RSA grows with the modulus; Ed25519 is flat. A node charges these against per-source budgets
# so that signature checks cannot starve its event loop (``protocol``).
_RSA_COST = {1024: 30e-6, 2048: 35e-6, 3072: 60e-6, 4096: 90e-6}
_ED25519_COST = 110e-6


def verify_cost(scheme: str, public_key: bytes) -> float:
    """Estimated CPU seconds to verify one signature of ``scheme`` by ``public_key``."""
    if scheme == RSA_PSS:
        # DER SubjectPublicKeyInfo of an e=65537 key: modulus bytes plus ~38 bytes of framing.
        bits = max(1024, min(4096, (len(public_key) - 38) * 8))
        return next((cost for size, cost in _RSA_COST.items() if bits <= size), 90e-6)
    return _ED25519_COST


#: The schemes a product node accepts.
STANDARD_VERIFIERS: Mapping[str, Verifier] = MappingProxyType(
    {ED25519: verify_ed25519, RSA_PSS: verify_rsa_pss}
)
