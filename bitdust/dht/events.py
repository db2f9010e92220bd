"""What a DHT node reports to its user: one small frozen dataclass per outcome (h11's events).

Each carries the ``op_id`` the user call returned, so a shell can hand it to whoever waits.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitdust.dht.records import Record
from bitdust.dht.wire import Contact


@dataclass(frozen=True, slots=True)
class LookupDone:
    """``nodes``: the k closest responding nodes to ``target``, nearest first."""

    op_id: int
    target: bytes
    nodes: tuple[Contact, ...]
    hops: int
    queried: int


@dataclass(frozen=True, slots=True)
class ValueFound:
    """Verified, unexpired records under ``key``, one per signer, newest first; may be empty."""

    op_id: int
    key: bytes
    records: tuple[Record, ...]
    hops: int
    queried: int


@dataclass(frozen=True, slots=True)
class StoreDone:
    op_id: int
    key: bytes
    stored_count: int


@dataclass(frozen=True, slots=True)
class PingDone:
    """``contact`` is None when the address did not answer in time."""

    op_id: int
    contact: Contact | None


@dataclass(frozen=True, slots=True)
class BootstrapDone:
    op_id: int
    contacts: int


@dataclass(frozen=True, slots=True)
class BootstrapFailed:
    op_id: int


@dataclass(frozen=True, slots=True)
class JoinRetry:
    """A join attempt failed (``failures`` so far); the next starts in ``delay`` seconds."""

    op_id: int
    failures: int
    delay: float


Event = LookupDone | ValueFound | StoreDone | PingDone | BootstrapDone | BootstrapFailed | JoinRetry
