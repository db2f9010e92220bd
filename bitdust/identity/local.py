"""The node's own identity on disk: its private key and its current identity document.

Layout in a directory the caller chooses (the node uses ``<state dir>/identity/``)::

    private_key.pem   the RSA identity key, PKCS#1 PEM, mode 0600
    identity.xml      the current signed identity document, mode 0644

Both are written atomically. :func:`load_local_identity` checks that the two belong together and
that the document's signature holds. Key material is never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bitdust.files import atomic_write, read_bounded
from bitdust.identity.document import MAX_DOCUMENT_SIZE, Identity, parse_identity
from bitdust.identity.errors import IdentityError
from bitdust.identity.keys import (
    RSAPrivateKey,
    load_private_key,
    public_key_to_openssh,
    save_private_key,
)
from bitdust.identity.signing import verify

KEY_FILE = "private_key.pem"
IDENTITY_FILE = "identity.xml"


@dataclass(frozen=True)
class LocalIdentity:
    """The node's key and identity, loaded together."""

    private_key: RSAPrivateKey
    identity: Identity


def local_identity_exists(directory: str | os.PathLike[str]) -> bool:
    """``True`` when both files are present."""
    base = Path(directory)
    return (base / KEY_FILE).is_file() and (base / IDENTITY_FILE).is_file()


def save_local_identity(
    directory: str | os.PathLike[str], private_key: RSAPrivateKey, identity: Identity
) -> None:
    """Write the key (0600) and the document (0644) into ``directory`` (created 0700)."""
    if public_key_to_openssh(private_key) != identity.publickey:
        raise IdentityError("the private key does not belong to this identity")
    base = Path(directory)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    save_private_key(base / KEY_FILE, private_key)
    _write_document(base / IDENTITY_FILE, identity)


def save_identity_document(directory: str | os.PathLike[str], identity: Identity) -> None:
    """Replace only the document (a new revision signed with the existing key)."""
    _write_document(Path(directory) / IDENTITY_FILE, identity)


def _write_document(path: Path, identity: Identity) -> None:
    atomic_write(path, identity.to_xml(), mode=0o644, overwrite=True, error=IdentityError)


def load_local_identity(
    directory: str | os.PathLike[str], *, accept_legacy: bool = True
) -> LocalIdentity:
    """Load and cross-check the node's key and identity.

    ``accept_legacy`` defaults to true here: a node may still hold the BitDust-signed document it
    was migrated with, and it signs its next revision with our scheme.
    """
    base = Path(directory)
    if not local_identity_exists(base):
        raise IdentityError(
            f"no identity in {base}: create one (bitdust identity create NAME) or restore a "
            "key backup (bitdust identity restore FILE)"
        )
    private_key = load_private_key(base / KEY_FILE)
    data = read_bounded(
        base / IDENTITY_FILE,
        MAX_DOCUMENT_SIZE,
        what=f"identity file {base / IDENTITY_FILE}",
        error=IdentityError,
    )
    identity = parse_identity(data)
    if public_key_to_openssh(private_key) != identity.publickey:
        raise IdentityError(
            f"{base / IDENTITY_FILE} does not belong to the key in {base / KEY_FILE}"
        )
    verify(identity, accept_legacy)
    return LocalIdentity(private_key, identity)
