"""What a DHT node keeps across restarts, as an interface the core writes through.

The core never opens a database: it is given a ``Persistence`` when it is built. The product
gives it the SQLite ``database.Database`` (which batches writes and commits them when the shell
says, never inside ``receive_datagram``); the simulator and unit tests give it the in-memory
``MemoryPersistence``. Whatever comes back from ``load_records`` is outside input and is checked
again by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Protocol

from bitdust.dht.records import Record
from bitdust.dht.wire import Contact


class Table(Enum):
    HELD = "records"  # records this node holds for the network, with the address they came from
    PUBLISHED = "published"  # records this node published itself and republishes until expiry


class Persistence(Protocol):
    def load_records(self, table: Table) -> list[tuple[Record, str]]:
        """Every kept record of ``table`` with its origin address ('' for published ones)."""
        ...

    def put_record(self, table: Table, record: Record, origin_ip: str = "") -> None: ...

    def delete_record(self, table: Table, key: bytes, public_key: bytes) -> None: ...

    def load_contacts(self) -> list[Contact]: ...

    def save_contacts(self, contacts: Iterable[Contact]) -> None:
        """Replace the kept routing table with ``contacts``."""
        ...


class MemoryPersistence:
    """Keeps everything in dicts: for the simulator and tests, and for a node without a file."""

    def __init__(self) -> None:
        self.records: dict[Table, dict[tuple[bytes, bytes], tuple[Record, str]]] = {
            table: {} for table in Table
        }
        self.contacts: list[Contact] = []

    def load_records(self, table: Table) -> list[tuple[Record, str]]:
        return list(self.records[table].values())

    def put_record(self, table: Table, record: Record, origin_ip: str = "") -> None:
        self.records[table][(record.key, record.public_key)] = (record, origin_ip)

    def delete_record(self, table: Table, key: bytes, public_key: bytes) -> None:
        self.records[table].pop((key, public_key), None)

    def load_contacts(self) -> list[Contact]:
        return list(self.contacts)

    def save_contacts(self, contacts: Iterable[Contact]) -> None:
        self.contacts = list(contacts)
