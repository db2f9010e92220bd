"""Exceptions of the identity layer.

Every error raised here carries a message a user or operator can act on (what was wrong and, where
there is one, what to do); callers print ``str(error)`` as one line. Messages never contain key
material.
"""

from __future__ import annotations

import enum


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


class Refusal(enum.StrEnum):
    """Why an identity server refused an identity: the kind, without the values the reason text
    carries, so that it can label a metric and a test can pin it."""

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    BAD_SIGNATURE = "bad_signature"
    NOT_A_SOURCE = "not_a_source"  # none of its sources is on this server
    STORED_COPY_UNREADABLE = "stored_copy_unreadable"
    KEY_TAKEOVER = "key_takeover"
    OLDER_REVISION = "older_revision"
    CHANGED_WITHOUT_REVISION = "changed_without_revision"
    SERVER_FULL = "server_full"
    QUOTA = "quota"  # new names per key or per address per hour
    CANNOT_STORE = "cannot_store"
    BY_REMOTE_SERVER = "by_remote_server"  # a server's answer, as its client sees it


class IdentityRefused(IdentityError):
    """An identity server refused to store an identity; ``reason`` says why, ``kind`` names
    the rule."""

    def __init__(self, kind: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class IdentityServerError(IdentityError):
    """Talking to an identity server failed (unreachable, timeout, protocol error, HTTP error)."""


class IdentityNotFound(IdentityServerError):
    """An identity server answered that it holds no identity of that name (HTTP 404)."""
