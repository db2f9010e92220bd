"""Exceptions of the identity layer.

Every error raised here carries a message a user or operator can act on (what was wrong and, where
there is one, what to do); callers print ``str(error)`` as one line. Messages never contain key
material.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base of every error of the identity layer; ``str()`` is the user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class IdurlError(IdentityError):
    """An IDURL, user name or host is malformed."""


class DocumentError(IdentityError):
    """An identity XML document is malformed, too large or breaks a structural rule."""


class SignatureError(IdentityError):
    """An identity's signature is missing, invalid or of a refused scheme."""


class KeyFileError(IdentityError):
    """A key, key file or key backup cannot be read, decrypted or written."""


class WrongPassphraseError(KeyFileError):
    """A passphrase-protected key backup could not be decrypted with the given passphrase."""


class IdentityRefused(IdentityError):
    """An identity server refused to store an identity; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdentityServerError(IdentityError):
    """Talking to an identity server failed (unreachable, timeout, protocol error, HTTP error)."""


class IdentityNotFound(IdentityServerError):
    """An identity server answered that it holds no identity of that name (HTTP 404)."""
