"""Identity key: OpenSSH form, derivation, private key files and BitDust-format key backups."""

from __future__ import annotations

import os
import stat

import pytest

from bitdust.identity.errors import KeyFileError, WrongPassphraseError
from bitdust.identity.keys import (
    MAX_KEY_FILE_SIZE,
    derive_key,
    generate_private_key,
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
        with pytest.raises(KeyFileError):
            public_key_from_openssh(bad)


def test_key_sizes():
    assert generate_private_key(1024).key_size == 1024
    with pytest.raises(KeyFileError, match="not supported"):
        generate_private_key(512)


def test_derived_keys_are_stable_and_distinct_per_label(key, other_key):
    a = derive_key(key, "catalogue")
    assert len(a) == 32 and a == derive_key(key, "catalogue")
    assert derive_key(key, "data/v1") != a
    assert derive_key(other_key, "catalogue") != a
    assert len(derive_key(key, "session-auth", 64)) == 64
    with pytest.raises(KeyFileError):
        derive_key(key, "")
