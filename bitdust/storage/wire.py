"""The storage protocol between a customer and its suppliers, over p2p sessions.

Every message is a msgpack map with a format version ``v`` and a fixed set of fields; the decoders
check the size before parsing and every field's type and range after, so a peer's bytes never
reach the store or the catalogue unchecked (DESIGN §13). The p2p session already proves who the
peer is: no message carries an identity.

Kinds (requests answer with a map, or with an error whose text is the reason):

- ``storage/hire`` {needed, suppliers}: become this supplier's customer with a quota of
  ``needed / suppliers * 2`` (BitDust's rule); answers {quota, used}. Hiring again changes the
  quota (never below what is stored).
- ``storage/release`` {}: end the contract; the supplier deletes every fragment of the customer.
- ``storage/put`` (a stream, header {id, size, sha256}): store one fragment; the supplier checks
  the size and the SHA-256 before it keeps it and refuses the stream with the reason otherwise.
- ``storage/get`` {id}: the supplier opens a ``storage/fragment`` stream back (header {id}) with
  the fragment, then answers {size, sha256}.
- ``storage/delete`` {ids}: answers {deleted, freed}.
- ``storage/list`` {after, limit}: the customer's fragments in id order after ``after``;
  answers {fragments: [[id, size], ...], more}.
- ``storage/audit`` {id, nonce, offset, length}: answers {digest} = SHA-256(nonce || the
  fragment's bytes [offset, offset + length)): a fresh nonce makes every answer new.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from bitdust.p2p.errors import P2PError, RequestRefused

VERSION = 1

HIRE = "storage/hire"
RELEASE = "storage/release"
PUT = "storage/put"
GET = "storage/get"
FRAGMENT = "storage/fragment"
DELETE = "storage/delete"
LIST = "storage/list"
AUDIT = "storage/audit"

ID_SIZE = 32  # a fragment id: a keyed hash, opaque to the supplier
DIGEST_SIZE = 32
MIN_NONCE, MAX_NONCE = 16, 64
#: The largest fragment: one share of the largest chunk (16 MiB, k = 1) and its header.
MAX_FRAGMENT = 16 * 1024 * 1024 + 64 * 1024
MAX_IDS = 1000  # per delete or list: 32 KiB of ids fits one p2p frame
MAX_MESSAGE = 48 * 1024
MAX_SPACE = 2**62


class StorageRefused(P2PError):
    """A storage request or answer broke the protocol, or was refused; the message says why."""


#: The supplier answered, but refused ("no such fragment", its copy is corrupt, we are no
#: customer of it) or its answer broke the protocol: an answer all the same.
REFUSED = (RequestRefused, StorageRefused)
#: No answer at all: no session, the session ended, or no answer in time.
UNREACHABLE = (P2PError, TimeoutError, OSError)
#: Either: the request did not get done, whoever is to blame.
FAILED = REFUSED + UNREACHABLE


def _bytes_of(size: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, bytes) and len(value) == size


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_IDS
        and all(isinstance(item, bytes) and len(item) == ID_SIZE for item in value)
    )


def _nonce(value: Any) -> bool:
    return isinstance(value, bytes) and MIN_NONCE <= len(value) <= MAX_NONCE


def _listing(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_IDS
        and all(
            isinstance(row, list)
            and len(row) == 2
            and isinstance(row[0], bytes)
            and len(row[0]) == ID_SIZE
            and type(row[1]) is int
            and 0 <= row[1] <= MAX_FRAGMENT
            for row in value
        )
    )


def _flag(value: Any) -> bool:
    return type(value) is bool


FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "needed": _int_in(1, MAX_SPACE),
    "suppliers": _int_in(1, 64),
    "quota": _int_in(0, MAX_SPACE),
    "used": _int_in(0, MAX_SPACE),
    "freed": _int_in(0, MAX_SPACE),
    "deleted": _int_in(0, MAX_IDS),
    "id": _bytes_of(ID_SIZE),
    "ids": _ids,
    "after": _bytes_of(ID_SIZE),
    "limit": _int_in(1, MAX_IDS),
    "size": _int_in(0, MAX_FRAGMENT),
    "sha256": _bytes_of(DIGEST_SIZE),
    "digest": _bytes_of(DIGEST_SIZE),
    "nonce": _nonce,
    "offset": _int_in(0, MAX_FRAGMENT),
    "length": _int_in(1, MAX_FRAGMENT),
    "fragments": _listing,
    "more": _flag,
}


@dataclass(frozen=True)
class Message:
    """The fields of one message kind (all required)."""

    name: str
    fields: tuple[str, ...]

    def encode(self, **values: Any) -> bytes:
        if set(values) != set(self.fields):
            raise ValueError(f"{self.name}: fields {sorted(values)} != {sorted(self.fields)}")
        return msgpack.packb({"v": VERSION, **values})

    def decode(self, data: bytes) -> dict[str, Any]:
        """The checked fields of a ``data`` from a peer; StorageRefused names what is wrong."""
        if len(data) > MAX_MESSAGE:
            raise StorageRefused(f"{self.name}: message larger than {MAX_MESSAGE} bytes")
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageRefused(f"{self.name}: not a msgpack message ({exc})") from None
        if not isinstance(fields, Mapping):
            raise StorageRefused(f"{self.name}: not a map")
        if fields.get("v") != VERSION:
            raise StorageRefused(f"{self.name}: unknown format version {fields.get('v')!r}")
        if set(fields) != {"v", *self.fields}:
            raise StorageRefused(f"{self.name}: expected the fields {', '.join(self.fields)}")
        for name in self.fields:
            if not FIELD_CHECKS[name](fields[name]):
                raise StorageRefused(f"{self.name}: field {name!r} is malformed or out of range")
        return {name: fields[name] for name in self.fields}


HIRE_REQUEST = Message(HIRE, ("needed", "suppliers"))
HIRE_ANSWER = Message(HIRE, ("quota", "used"))
RELEASE_REQUEST = Message(RELEASE, ())
RELEASE_ANSWER = Message(RELEASE, ("freed",))
PUT_HEADER = Message(PUT, ("id", "size", "sha256"))
GET_REQUEST = Message(GET, ("id",))
GET_ANSWER = Message(GET, ("size", "sha256"))
FRAGMENT_HEADER = Message(FRAGMENT, ("id",))
DELETE_REQUEST = Message(DELETE, ("ids",))
DELETE_ANSWER = Message(DELETE, ("deleted", "freed"))
LIST_REQUEST = Message(LIST, ("after", "limit"))
LIST_ANSWER = Message(LIST, ("fragments", "more"))
AUDIT_REQUEST = Message(AUDIT, ("id", "nonce", "offset", "length"))
AUDIT_ANSWER = Message(AUDIT, ("digest",))

#: ``after`` of the first page of a listing
FIRST = bytes(ID_SIZE)
