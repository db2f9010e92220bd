"""RSA keys that come from outside, and the RSA-PSS signatures made with them.

One set of rules for every part that verifies or signs with an identity key — identity
documents, DHT records, key backups, later p2p handshakes — so that none of them imports another
to share it. A public key from the network is checked before it is used: RSA, one of
:data:`ALLOWED_KEY_BITS`, and the public exponent 65537 only (a huge exponent makes every
verification cost milliseconds: a cheap way to burn a node's CPU). Never logs or shows key material.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bitdust.keysize import ALLOWED_KEY_BITS, KeyRefused, allowed_key_sizes_text

PUBLIC_EXPONENT = 65537
PSS_SALT_LENGTH = 32


def check_public_key(key: object) -> rsa.RSAPublicKey:
    """``key`` (public, or the public half of a private key) when it is an acceptable RSA key."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyRefused("the key is not an RSA key")
    if key.key_size not in ALLOWED_KEY_BITS:
        raise KeyRefused(f"the key has {key.key_size} bits (expected {allowed_key_sizes_text()})")
    if key.public_numbers().e != PUBLIC_EXPONENT:
        raise KeyRefused(f"the key's public exponent is not {PUBLIC_EXPONENT}")
    return key


def load_der_public_key(data: bytes) -> rsa.RSAPublicKey:
    """A DER SubjectPublicKeyInfo from outside, checked; :class:`KeyRefused` otherwise."""
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise KeyRefused("the public key is not a DER SubjectPublicKeyInfo") from None
    return check_public_key(key)


def public_key_der(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``, as records and handshakes carry it."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)


def sign_pss(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """RSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt: the one signature our schemes use."""
    return private_key.sign(data, _pss(), hashes.SHA256())


def verify_pss(public_key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> bool:
    """``True`` when ``signature`` is :func:`sign_pss` of ``data``; never raises on bad input."""
    if len(signature) != (public_key.key_size + 7) // 8:
        return False
    try:
        public_key.verify(signature, data, _pss(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
