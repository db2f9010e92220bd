"""The customer's side of the storage protocol (:mod:`bitdust.storage.wire`): what it asks of a
supplier over p2p, and every answer checked before it is believed.

A fragment comes back on a ``storage/fragment`` stream the supplier opens after a ``storage/get``
request; the :class:`Suppliers` registry matches it to the request that asked for it, so a
supplier can never push a fragment nobody asked for, nor one larger than the protocol allows.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgpack

from bitdust.p2p.service import P2PService
from bitdust.p2p.transport import IncomingStream
from bitdust.storage import wire
from bitdust.storage.catalogue import Challenge
from bitdust.storage.wire import StorageRefused

REQUEST_TIMEOUT = 30.0
#: A fragment moves at least this fast, or its transfer is given up (a stalled supplier must
#: not hold an upload or a download for ever); on top of REQUEST_TIMEOUT.
MIN_RATE = 256 * 1024  # bytes per second

SUPPLIER_LIST_NAME = "bitdust/storage/v1/suppliers"
SUPPLIER_LIST_VERSION = 1
MAX_SUPPLIER_LIST = 16 * 1024
MAX_IDURL = 256


def transfer_timeout(size: int) -> float:
    return REQUEST_TIMEOUT + size / MIN_RATE


class Suppliers:
    """Talks to suppliers for one customer node: hire, put, get, delete, list, audit."""

    def __init__(self, p2p: P2PService) -> None:
        self.p2p = p2p
        self._expected: dict[tuple[str, bytes], asyncio.Future[list[memoryview]]] = {}
        self.bytes_sent = 0
        self.bytes_received = 0
        p2p.on_stream(wire.FRAGMENT, self._receive_fragment)

    async def _ask(
        self,
        idurl: str,
        request: wire.Message,
        answer: wire.Message,
        timeout: float,
        idempotent: bool = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """One request and its checked answer; ``idempotent`` ones are sent again over a new
        session when the connection is lost (a routed supplier moving to another router)."""
        reply = await self.p2p.request(
            idurl, request.name, request.encode(**fields), timeout, idempotent
        )
        return answer.decode(reply)

    async def hire(self, idurl: str, needed: int, suppliers: int) -> dict[str, Any]:
        """Become ``idurl``'s customer: its answer has the quota it granted (P2PError if not)."""
        return await self._ask(
            idurl,
            wire.HIRE_REQUEST,
            wire.HIRE_ANSWER,
            REQUEST_TIMEOUT,
            needed=needed,
            suppliers=suppliers,
        )

    async def release(self, idurl: str) -> int:
        answer = await self._ask(idurl, wire.RELEASE_REQUEST, wire.RELEASE_ANSWER, REQUEST_TIMEOUT)
        return answer["freed"]

    async def put(
        self, idurl: str, fragment_id: bytes, data: bytes, sha256: bytes | None = None
    ) -> None:
        """Store ``data`` (whose SHA-256 is ``sha256``, computed here if not given) as
        ``fragment_id`` on ``idurl``; returns once the supplier kept it (it checks size and
        SHA-256 first). P2PError with the supplier's reason otherwise."""
        if sha256 is None:
            sha256 = await asyncio.to_thread(_sha256, data)
        header = wire.PUT_HEADER.encode(id=fragment_id, size=len(data), sha256=sha256)
        async with asyncio.timeout(transfer_timeout(len(data))):
            stream = await self.p2p.open_stream(idurl, wire.PUT, header)
            try:
                await stream.write(data)
                await stream.finish()
            except BaseException:
                stream.reset("the upload was given up")
                raise
        self.bytes_sent += len(data)

    async def get(self, idurl: str, fragment_id: bytes, size: int) -> bytes:
        """The fragment ``fragment_id`` (``size`` bytes) from ``idurl``, as long as the supplier
        announced. Its content is not hashed here: the supplier checked it against its ledger
        while reading it, Noise authenticated it on the way, and the chunk's tag proves it to
        the customer; a fourth pass over every byte would find nothing these miss.
        Not retried: a reader has other suppliers to ask, and a dead one must not hold it."""
        key = (idurl, fragment_id)
        if key in self._expected:
            raise StorageRefused("this fragment is already being fetched from this supplier")
        arrived: asyncio.Future[list[memoryview]] = asyncio.get_running_loop().create_future()
        self._expected[key] = arrived
        try:
            async with asyncio.timeout(transfer_timeout(size)):
                answer = await self._ask(
                    idurl,
                    wire.GET_REQUEST,
                    wire.GET_ANSWER,
                    transfer_timeout(size),
                    idempotent=False,
                    id=fragment_id,
                )
                # one copy, not one per piece, and off the loop (a join of 1 MiB or more
                # lets go of the GIL)
                data = await asyncio.to_thread(b"".join, await arrived)
        finally:
            self._expected.pop(key, None)
            if not arrived.done():
                arrived.cancel()
        if len(data) != answer["size"]:
            raise StorageRefused(
                f"{idurl} sent {len(data)} bytes of a fragment it announced as {answer['size']}"
            )
        self.bytes_received += len(data)
        return data

    async def _receive_fragment(self, peer: str, stream: IncomingStream) -> None:
        try:
            header = wire.FRAGMENT_HEADER.decode(stream.header)
        except StorageRefused as exc:
            stream.refuse(str(exc))
            return
        arrived = self._expected.get((peer, header["id"]))
        if arrived is None or arrived.done():
            stream.refuse("no such fragment was asked for")
            return
        pieces, length = [], 0
        async for piece in stream:
            pieces.append(piece)
            length += len(piece)
            if length > wire.MAX_FRAGMENT:
                stream.refuse(f"a fragment has at most {wire.MAX_FRAGMENT} bytes")
                arrived.set_exception(StorageRefused(f"{peer} sent an oversized fragment"))
                return
        if not arrived.done():
            arrived.set_result(pieces)

    async def delete(self, idurl: str, fragment_ids: list[bytes]) -> int:
        """Delete fragments on ``idurl`` (in batches the protocol allows); bytes freed."""
        freed = 0
        for start in range(0, len(fragment_ids), wire.MAX_IDS):
            answer = await self._ask(
                idurl,
                wire.DELETE_REQUEST,
                wire.DELETE_ANSWER,
                REQUEST_TIMEOUT,
                ids=fragment_ids[start : start + wire.MAX_IDS],
            )
            freed += answer["freed"]
        return freed

    async def audit(self, idurl: str, fragment_id: bytes, challenge: Challenge) -> bytes:
        """``idurl``'s answer to ``challenge`` on its copy of ``fragment_id`` (the auditor
        compares it); not sent again on a new session: a nonce is asked once."""
        answer = await self._ask(
            idurl,
            wire.AUDIT_REQUEST,
            wire.AUDIT_ANSWER,
            REQUEST_TIMEOUT,
            idempotent=False,
            id=fragment_id,
            nonce=challenge.nonce,
            offset=challenge.offset,
            length=challenge.length,
        )
        return answer["digest"]


def encode_supplier_list(suppliers: list[str], k: int, revision: int) -> bytes:
    """The customer's signed supplier list as published under its owned DHT key."""
    return msgpack.packb(
        {"v": SUPPLIER_LIST_VERSION, "suppliers": suppliers, "k": k, "revision": revision}
    )


def decode_supplier_list(data: bytes) -> dict[str, Any]:
    """A supplier list read from the DHT, checked field by field (StorageRefused otherwise)."""
    if len(data) > MAX_SUPPLIER_LIST:
        raise StorageRefused("supplier list too large")
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise StorageRefused("supplier list is not msgpack") from None
    if not isinstance(fields, dict) or set(fields) != {"v", "suppliers", "k", "revision"}:
        raise StorageRefused("supplier list is not a map of the known fields")
    suppliers, k, revision = fields["suppliers"], fields["k"], fields["revision"]
    if fields["v"] != SUPPLIER_LIST_VERSION:
        raise StorageRefused(f"supplier list of unknown format version {fields['v']!r}")
    if (
        not isinstance(suppliers, list)
        or not 1 <= len(suppliers) <= 64
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_IDURL for s in suppliers)
        or type(k) is not int
        or not 1 <= k <= len(suppliers)
        or type(revision) is not int
        or revision < 0
    ):
        raise StorageRefused("supplier list has malformed fields")
    return {"suppliers": suppliers, "k": k, "revision": revision}


def _sha256(data: bytes) -> bytes:
    """Run in a worker thread: hashing megabytes on the event loop holds every session up."""
    return hashlib.sha256(data).digest()
