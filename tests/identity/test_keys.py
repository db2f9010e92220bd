"""Identity key: OpenSSH form, derivation, private key files and BitDust-format key backups."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.identity.errors import KeyFileError, WrongPassphraseError
from bitdust.identity.keys import (
    MAX_KEY_FILE_SIZE,
    derive_key,
    generate_private_key,
    key_backup_bytes,
    load_private_key,
    public_key_from_openssh,
    public_key_to_openssh,
    read_key_backup,
    save_private_key,
    write_key_backup,
)

IDURL = "http://host-a.com/alice.xml"


def _same_key(a, b) -> bool:
    return a.private_numbers() == b.private_numbers()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_backup_round_trip_without_passphrase(tmp_path, key):
    path = tmp_path / "alice.key"
    write_key_backup(path, IDURL, key)
    data = path.read_bytes()
    assert data.startswith(b"http://host-a.com/alice.xml\n-----BEGIN RSA PRIVATE KEY-----\n")
    idurl, restored = read_key_backup(path)
    assert idurl == IDURL and _same_key(restored, key)
    assert read_key_backup(data)[0] == IDURL  # bytes are the content
    assert _mode(path) == 0o600


def test_key_backup_round_trip_with_passphrase(tmp_path, key):
    path = tmp_path / "alice.key"
    write_key_backup(path, IDURL, key, passphrase="correct horse")
    data = path.read_bytes()
    assert data.startswith(b"http://host-a.com/alice.xml\n-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert b"RSA PRIVATE KEY" not in data
    idurl, restored = read_key_backup(str(path), passphrase="correct horse")
    assert idurl == IDURL and _same_key(restored, key)
    assert _mode(path) == 0o600


def test_key_backup_with_wrong_passphrase_says_so(tmp_path, key):
    path = tmp_path / "alice.key"
    write_key_backup(path, IDURL, key, passphrase="correct horse")
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        read_key_backup(path, passphrase="battery staple")
    with pytest.raises(WrongPassphraseError, match="give the passphrase"):
        read_key_backup(path)


def test_key_backup_is_mode_0600_even_with_permissive_umask(tmp_path, key):
    old = os.umask(0)
    try:
        write_key_backup(tmp_path / "k", IDURL, key)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_key_backup_refuses_to_overwrite(tmp_path, key, other_key):
    path = tmp_path / "alice.key"
    path.write_bytes(b"precious")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_backup(path, IDURL, other_key)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key"]


def test_key_backup_leaves_no_temp_file(tmp_path, key):
    write_key_backup(tmp_path / "alice.key", IDURL, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "first line must be the IDURL"),
        (b"hello\n-----BEGIN RSA PRIVATE KEY-----\n", "first line must be the IDURL"),
        (b"http://host-a.com/alice.xml\n", "no PEM private key"),
        (b"http://host-a.com/alice.xml\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n", "valid PEM"),
        (b"x" * (MAX_KEY_FILE_SIZE + 1), "too large"),
    ],
)
def test_not_a_key_backup_is_a_clear_error(tmp_path, content, match):
    with pytest.raises(KeyFileError, match=match):
        read_key_backup(content)
    path = tmp_path / "backup"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=match):
        read_key_backup(path)


def test_missing_backup_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="no such file"):
        read_key_backup(tmp_path / "nope")


def test_private_key_file_is_0600_and_replaced_atomically(tmp_path, key, other_key):
    path = tmp_path / "private_key.pem"
    save_private_key(path, key)
    assert _mode(path) == 0o600
    save_private_key(path, other_key)
    assert _mode(path) == 0o600
    assert _same_key(load_private_key(path), other_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private_key.pem"]


def test_openssh_round_trip(key):
    text = public_key_to_openssh(key)
    assert text.startswith("ssh-rsa AAAAB3NzaC1yc2E") and " " not in text[8:]
    assert public_key_from_openssh(text).public_numbers() == key.public_key().public_numbers()
    for bad in ("ssh-rsa", "ssh-ed25519 AAAA", "ssh-rsa AAAA!", "ssh-rsa AAAAB3Nz comment"):
        with pytest.raises(KeyFileError, match=r"not an OpenSSH RSA key|not a valid OpenSSH"):
            public_key_from_openssh(bad)


def test_key_sizes():
    assert generate_private_key(1024).key_size == 1024
    assert generate_private_key(3072).key_size == 3072
    with pytest.raises(KeyFileError, match=r"key size 512 is not supported \(expected 1024, 2048"):
        generate_private_key(512)


def big_exponent_key(key) -> rsa.RSAPrivateKey:
    """``key``'s modulus with an odd public exponent of about 1,500 bits: valid RSA, but every
    verification with it costs many times one with 65537."""
    private = key.private_numbers()
    p, q = private.p, private.q
    phi = (p - 1) * (q - 1)
    e = (1 << 1500) + 1
    while math.gcd(e, phi) != 1:
        e += 2
    d = pow(e, -1, phi)
    public = rsa.RSAPublicNumbers(e, private.public_numbers.n)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public)
    return numbers.private_key()


def test_a_public_key_with_a_large_exponent_is_refused(key):
    crafted = big_exponent_key(key).public_key()
    text = crafted.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    with pytest.raises(KeyFileError, match="public exponent is not 65537"):
        public_key_from_openssh(text)


def test_a_key_backup_with_a_large_exponent_is_refused(key):
    backup = key_backup_bytes(IDURL, big_exponent_key(key))
    with pytest.raises(KeyFileError, match="refused: the key's public exponent is not 65537"):
        read_key_backup(backup)


def rfc5869_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 as RFC 5869 section 2 writes it, independent of the code under test."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_the_independent_hkdf_matches_rfc5869_test_case_1():
    okm = rfc5869_hkdf_sha256(bytes([0x0B]) * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_derive_key_is_hkdf_of_the_pkcs1_key_pinned(key):
    """A user's data keys come from this derivation: its output must never change."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ikm = hashlib.sha256(der).digest()
    salt = b"bitdust identity key derivation v1"
    expected = "6d60815f34230b742af058f689d3a239f0397813fe9751b6d2d1b8d9762875b0"
    assert rfc5869_hkdf_sha256(ikm, salt, b"catalogue", 32).hex() == expected
    assert derive_key(key, "catalogue").hex() == expected
    assert derive_key(key, "session-auth", 64) == rfc5869_hkdf_sha256(
        ikm, salt, b"session-auth", 64
    )


def test_derived_keys_are_stable_and_distinct_per_label(key, other_key):
    a = derive_key(key, "catalogue")
    assert len(a) == 32 and a == derive_key(key, "catalogue")
    assert derive_key(key, "data/v1") != a
    assert derive_key(other_key, "catalogue") != a
    assert len(derive_key(key, "session-auth", 64)) == 64
    with pytest.raises(KeyFileError, match="is not a key derivation label"):
        derive_key(key, "")
