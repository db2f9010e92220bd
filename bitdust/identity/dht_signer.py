"""The identity's RSA key as a DHT record signer (``bitdust.dht.records`` plug-in).

Scheme ``rsa-pss-sha256``: RSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt, over the record's own
domain-separated canonical bytes (``bitdust-dht-record-v1``), so a record signature can never pass
for an identity signature or the reverse. The public key travels as DER SubjectPublicKeyInfo.
:func:`register` makes DHT nodes accept the scheme; call it once at start-up (idempotent).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bitdust.identity.keys import ALLOWED_KEY_BITS, fingerprint

SCHEME = "rsa-pss-sha256"
_SALT = 32


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_SALT)


class RsaDhtSigner:
    """Signs DHT records with the identity key. Never logs or shows the private key."""

    scheme = SCHEME

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, _pss(), hashes.SHA256())

    def __repr__(self) -> str:
        return f"RsaDhtSigner({fingerprint(self._key)})"


def verify_rsa_record(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """``records.Verifier`` for :data:`SCHEME`; never raises."""
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size not in ALLOWED_KEY_BITS:
        return False
    if len(signature) != (key.key_size + 7) // 8:
        return False
    try:
        key.verify(signature, data, _pss(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def register() -> None:
    """Register :data:`SCHEME` with the DHT's record verifiers."""
    from bitdust.dht import records

    records.register_verifier(SCHEME, verify_rsa_record)
