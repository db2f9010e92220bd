"""The RSA key sizes this node offers and accepts, apart from :mod:`bitdust.rsakeys` so that the
CLI can name them without importing ``cryptography`` (a tenth of every command's start)."""

from __future__ import annotations

DEFAULT_KEY_BITS = 2048
ALLOWED_KEY_BITS = (1024, 2048, 3072, 4096)


class KeyRefused(ValueError):
    """A key from outside breaks a rule of :mod:`bitdust.rsakeys`; the message says which."""


def allowed_key_sizes_text() -> str:
    """``1024, 2048, 3072 or 4096``: for messages that list the choices."""
    sizes = [str(bits) for bits in ALLOWED_KEY_BITS]
    return ", ".join(sizes[:-1]) + " or " + sizes[-1]


def check_key_size(bits: int) -> int:
    """``bits`` when it is an allowed size, else :class:`KeyRefused` naming the choices."""
    if bits not in ALLOWED_KEY_BITS:
        raise KeyRefused(
            f"key size {bits!r} is not supported (expected {allowed_key_sizes_text()})"
        )
    return bits
