"""The first bytes of a connection to a router's TCP port that is not a direct p2p session.

The router shares ``services/tcp-connections/tcp-port`` with p2p. A direct session opens with a
Noise record: a 2-byte big-endian length, and the first handshake message is a few dozen bytes,
so its first byte is 0x00. A relayed connection opens instead with ``MAGIC`` (its first byte is
``B``), then one byte saying what it is and one length-prefixed ASCII id:

- ``CONNECT <route>``: a peer dialled a routed node's contact ``tcp://router:port/<route>``; the
  bytes after the preamble are its end-to-end Noise session with that node;
- ``ACCEPT <token>``: the routed node answers a peer's CONNECT, with the one-time token the
  router gave it over their authenticated session.

This module only encodes and decodes; it never trusts a length it has not bounded.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAGIC = b"BDRELAY1"
MAX_ID = 64
_ID_RE = re.compile(rb"[A-Za-z0-9_-]{1,64}")
HEADER = len(MAGIC) + 2
MAX_PREAMBLE = HEADER + MAX_ID


class Kind(enum.IntEnum):
    CONNECT = 1  # a peer asks for a route
    ACCEPT = 2  # the routed node takes a pending connection


class BadPreamble(ValueError):
    """The first bytes of a connection are not a relay preamble; the connection is dropped."""


@dataclass(frozen=True, slots=True)
class Preamble:
    kind: Kind
    ident: str  # the route (CONNECT) or the token (ACCEPT)

    def encode(self) -> bytes:
        ident = self.ident.encode("ascii")
        if not _ID_RE.fullmatch(ident):
            raise ValueError(f"relay id {self.ident!r} is not 1-{MAX_ID} of [A-Za-z0-9_-]")
        return MAGIC + bytes((self.kind, len(ident))) + ident


def could_be_relayed(data: bytes) -> bool:
    """Whether ``data``, the first bytes a connection sent, may still turn out a preamble."""
    head = data[: len(MAGIC)]
    return MAGIC.startswith(head)


def decode(data: bytes) -> tuple[Preamble, int] | None:
    """The preamble at the start of ``data`` and its length, or None when more bytes are
    needed. Raises :class:`BadPreamble` as soon as the bytes cannot be one."""
    if not could_be_relayed(data):
        raise BadPreamble("not a relay preamble")
    if len(data) < HEADER:
        return None
    try:
        kind = Kind(data[len(MAGIC)])
    except ValueError:
        raise BadPreamble(f"unknown relay preamble kind {data[len(MAGIC)]}") from None
    size = data[len(MAGIC) + 1]
    if not 0 < size <= MAX_ID:
        raise BadPreamble(f"relay id of {size} bytes (1 to {MAX_ID} allowed)")
    if len(data) < HEADER + size:
        return None
    ident = data[HEADER : HEADER + size]
    if not _ID_RE.fullmatch(ident):
        raise BadPreamble("relay id has characters outside [A-Za-z0-9_-]")
    return Preamble(kind, ident.decode("ascii")), HEADER + size
