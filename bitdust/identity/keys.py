"""The account's RSA identity key: generation, OpenSSH/PEM encoding, sub-key derivation, backups.

One RSA key per account (2048 bits by default; the sizes and the public exponent every part accepts
are :mod:`bitdust.rsakeys`' rules, checked on every key read from outside: documents, backups).
Every other secret of the account is derived from it with :func:`derive_key` (HKDF-SHA256 with a
distinct label per use), so the key backup file is all a user needs to recover everything.

Key backup file, BitDust's format: the IDURL on the first line, then the PEM private key. Without a
passphrase the key is written as BitDust writes it (PKCS#1, ``BEGIN RSA PRIVATE KEY``); with one it
is an encrypted PKCS#8 PEM (``BEGIN ENCRYPTED PRIVATE KEY``, the best encryption ``cryptography``
offers). Either form is read back.

Rules this module keeps: private keys and backups are written atomically (temporary file in the
same directory created with mode 0600, fsync, rename/link) and end up 0600; key material is never
logged nor put into an exception message; a backup is never overwritten; input is size-bounded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bitdust import keysize, rsakeys
from bitdust.files import atomic_write, read_bounded
from bitdust.identity.errors import IdurlError, KeyFileError, WrongPassphraseError
from bitdust.identity.idurl import parse_idurl

MAX_KEY_FILE_SIZE = 64 * 1024
MAX_OPENSSH_KEY_LENGTH = 1024

_HKDF_SALT = b"bitdust identity key derivation v1"
_LABEL_RE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,127}")
_OPENSSH_RE = re.compile(r"ssh-rsa [A-Za-z0-9+/]+={0,2}")

RSAPrivateKey = rsa.RSAPrivateKey
RSAPublicKey = rsa.RSAPublicKey


# --- generation and public keys -------------------------------------------------------------------


def generate_private_key(bits: int = keysize.DEFAULT_KEY_BITS) -> rsa.RSAPrivateKey:
    """A new RSA identity key of ``bits`` bits (one of :data:`bitdust.keysize.ALLOWED_KEY_BITS`)."""
    try:
        keysize.check_key_size(bits)
    except keysize.KeyRefused as exc:
        raise KeyFileError(str(exc)) from None
    return rsa.generate_private_key(public_exponent=rsakeys.PUBLIC_EXPONENT, key_size=bits)


def public_key_to_openssh(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """The OpenSSH one-line form ``ssh-rsa AAAA...`` (no comment), as in identity files."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")


def public_key_from_openssh(text: str) -> rsa.RSAPublicKey:
    """Parse ``ssh-rsa AAAA...`` into an RSA public key that
    :func:`bitdust.rsakeys.check_public_key` accepts (an allowed size, the exponent 65537).

    Raises :class:`KeyFileError` with the reason otherwise.
    """
    if (
        not isinstance(text, str)
        or len(text) > MAX_OPENSSH_KEY_LENGTH
        or not _OPENSSH_RE.fullmatch(text)
    ):
        raise KeyFileError("the public key is not an OpenSSH RSA key ('ssh-rsa AAAA...')")
    try:
        key = serialization.load_ssh_public_key(text.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError("the public key is not a valid OpenSSH RSA key") from None
    try:
        return rsakeys.check_public_key(key)
    except keysize.KeyRefused as exc:
        raise KeyFileError(f"the public key is refused: {exc}") from None


def fingerprint(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """SHA-256 fingerprint of the public key, OpenSSH style (``SHA256:...``); safe to log."""
    blob = base64.b64decode(public_key_to_openssh(key).split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


# --- derivation ----------------------------------------------------------------------------------


def derive_key(private_key: rsa.RSAPrivateKey, label: str, length: int = 32) -> bytes:
    """Derive ``length`` bytes for one purpose from the identity key.

    HKDF-SHA256 with input keying material SHA-256(PKCS#1 DER of the private key), a fixed salt and
    ``info`` = the label. Distinct labels (``"catalogue"``, ``"data/v1"``, ``"session-auth"``...)
    give independent keys; the same key and label always give the same bytes.
    """
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label):
        raise KeyFileError(f"{label!r} is not a key derivation label (1-128 of a-z 0-9 . _ / : -)")
    if not 1 <= length <= 255 * 32:
        raise KeyFileError(f"cannot derive {length} bytes (expected 1-{255 * 32})")
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ikm = hashlib.sha256(der).digest()
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=label.encode("ascii")
    )
    return hkdf.derive(ikm)


# --- PEM -----------------------------------------------------------------------------------------


def private_key_to_pem(key: rsa.RSAPrivateKey, passphrase: str | bytes | None = None) -> bytes:
    """PEM of the private key: PKCS#1 in clear, or encrypted PKCS#8 when a passphrase is given."""
    if passphrase is None:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    secret = _passphrase_bytes(passphrase)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret),
    )


def private_key_from_pem(
    data: bytes, passphrase: str | bytes | None = None, *, what: str = "the key file"
) -> rsa.RSAPrivateKey:
    """Load an RSA private key from PEM (PKCS#1 or PKCS#8, encrypted or not).

    A passphrase given for a key that is not encrypted is ignored. Raises
    :class:`WrongPassphraseError` or :class:`KeyFileError` with a message naming ``what``.
    """
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"{what} is too large to be a key ({len(data)} bytes)")
    encrypted = b"ENCRYPTED" in data
    if encrypted and passphrase is None:
        raise WrongPassphraseError(f"{what} is protected by a passphrase: give the passphrase")
    secret = _passphrase_bytes(passphrase) if encrypted and passphrase is not None else None
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            raise WrongPassphraseError(
                f"cannot decrypt {what}: wrong passphrase (or a damaged file)"
            ) from None
        raise KeyFileError(f"{what} does not hold a valid PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{what} does not hold an RSA private key")
    try:
        rsakeys.check_public_key(key)
    except keysize.KeyRefused as exc:
        raise KeyFileError(f"{what} holds a key that is refused: {exc}") from None
    return key


def save_private_key(path: str | os.PathLike[str], key: rsa.RSAPrivateKey) -> None:
    """Write the private key as PKCS#1 PEM to ``path`` atomically with mode 0600 (replacing)."""
    atomic_write(
        Path(path), private_key_to_pem(key), mode=0o600, overwrite=True, error=KeyFileError
    )


def load_private_key(
    path: str | os.PathLike[str], passphrase: str | bytes | None = None
) -> rsa.RSAPrivateKey:
    """Read a private key written by :func:`save_private_key`."""
    data = read_bounded(
        Path(path), MAX_KEY_FILE_SIZE, what=f"key file {os.fspath(path)}", error=KeyFileError
    )
    return private_key_from_pem(data, passphrase, what=f"key file {os.fspath(path)}")


# --- key backup ----------------------------------------------------------------------------------


def key_backup_bytes(
    idurl: str, key: rsa.RSAPrivateKey, passphrase: str | bytes | None = None
) -> bytes:
    """The content of a key backup: the IDURL line then the PEM key."""
    try:
        parse_idurl(idurl)
    except IdurlError as exc:
        raise KeyFileError(f"cannot write a key backup: {exc.message}") from None
    return idurl.encode("ascii") + b"\n" + private_key_to_pem(key, passphrase)


def write_key_backup(
    path: str | os.PathLike[str],
    idurl: str,
    key: rsa.RSAPrivateKey,
    passphrase: str | bytes | None = None,
) -> None:
    """Write a key backup file at ``path``: mode 0600, atomic, never over an existing file.

    Raises :class:`KeyFileError` when ``path`` exists ("refusing to overwrite ...") or cannot be
    written.
    """
    data = key_backup_bytes(idurl, key, passphrase)
    atomic_write(Path(path), data, mode=0o600, overwrite=False, error=KeyFileError)


def read_key_backup(
    path_or_bytes: str | os.PathLike[str] | bytes, passphrase: str | bytes | None = None
) -> tuple[str, rsa.RSAPrivateKey]:
    """Read a key backup: ``bytes`` are the file's content, ``str``/path-like a file to read.

    Returns ``(idurl, private_key)``. Raises :class:`WrongPassphraseError` (missing or wrong
    passphrase) or :class:`KeyFileError` (not a backup file, too large, unreadable).
    """
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data = bytes(path_or_bytes)
        what = "the key backup"
        if len(data) > MAX_KEY_FILE_SIZE:
            raise KeyFileError(
                f"{what} is {len(data)} bytes: too large to be a key backup "
                f"(limit {MAX_KEY_FILE_SIZE})"
            )
    else:
        what = f"key backup {os.fspath(path_or_bytes)}"
        data = read_bounded(Path(path_or_bytes), MAX_KEY_FILE_SIZE, what=what, error=KeyFileError)
    first, sep, rest = data.partition(b"\n")
    first = first.rstrip(b"\r")
    try:
        idurl = first.decode("ascii")
        parse_idurl(idurl)
    except (UnicodeDecodeError, IdurlError):
        raise KeyFileError(
            f"{what} is not a key backup file: its first line must be the IDURL "
            "(e.g. http://host-a.com/alice.xml), followed by the PEM private key"
        ) from None
    if not sep or b"-----BEGIN " not in rest:
        raise KeyFileError(f"{what} is not a key backup file: no PEM private key after the IDURL")
    return idurl, private_key_from_pem(rest, passphrase, what=what)


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not secret:
        raise KeyFileError("the passphrase is empty")
    return secret
