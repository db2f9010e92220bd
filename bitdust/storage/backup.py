"""One file's bytes in, one catalogue version out; and a version's chunks back, in order.

The customer service gives these functions a :class:`ChunkPlacer` (where chunks go and come from)
and the catalogue; they own the shape of the pipeline: content-defined chunks, a bounded number
of chunks in flight, the file's SHA-256 and size checked before a version is recorded. Memory stays
bounded whatever the file size: the chunker holds at most two of its largest chunks, and at most
``CHUNKS_IN_FLIGHT`` chunks are being encoded and sent (``CHUNKS_AHEAD`` fetched and decoded)
at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from bitdust.storage.catalogue import Catalogue, FileVersion
from bitdust.storage.chunker import Chunker
from bitdust.storage.codec import CodecError
from bitdust.storage.interface import BackupError, UploadResult

#: Chunks encoded and sent at once (each up to 16 MiB of plaintext and its fragments): two
#: keep both cores busy; a third only added memory.
CHUNKS_IN_FLIGHT = 2
#: Chunks a restore fetches ahead of the one it writes (fetching waits on the network more).
CHUNKS_AHEAD = 3


class FragmentUnavailable(Exception):
    """One fragment could not be fetched or is malformed; others may do."""


class ChunkPlacer(Protocol):
    """Where the chunks of a backup go (the customer service: encode and put on suppliers)."""

    async def store_chunk(self, plaintext: bytes) -> tuple[bytes, int]:
        """Store ``plaintext`` unless the account has it; (chunk id, bytes sent to suppliers)."""
        ...

    async def load_chunk(self, chunk_id: bytes) -> bytes:
        """The plaintext of a stored chunk, from any k of its fragments."""
        ...


class _InThread:
    """One function called on each piece of a stream, in order, in a worker thread, while the
    caller goes on receiving. Pieces go to the thread together, at least ``batch`` bytes a call
    (each call costs a hop to a thread, and the socket delivers far smaller pieces); pieces that
    arrive while a call runs wait for the next one, up to ``backlog`` bytes (beyond that
    :meth:`submit` waits), so a slow call (a chunker's cut) never stops the stream's reader."""

    def __init__(
        self,
        function: Callable[[bytes], Any],
        batch: int = 1024 * 1024,
        backlog: int = 4 * 1024 * 1024,
    ) -> None:
        self._function = function
        self._batch = batch
        self._backlog = backlog
        self._waiting: list[bytes] = []
        self._waiting_bytes = 0
        self._running: asyncio.Future[list[Any]] | None = None

    async def submit(self, data: bytes) -> list[Any]:
        """Take ``data``; return the results of the calls that finished meanwhile, in order."""
        self._waiting.append(data)
        self._waiting_bytes += len(data)
        running = self._running is not None and not self._running.done()
        if self._waiting_bytes < (self._backlog if running else self._batch):
            return []
        return await self._start_waiting()

    async def drain(self) -> list[Any]:
        """The results of every piece taken and not returned yet, once all have run."""
        results = await self._start_waiting() if self._waiting else []
        return results + await self.settle()

    async def settle(self) -> list[Any]:
        """The results of the call running, if any; pieces still waiting are not run."""
        running, self._running = self._running, None
        return [] if running is None else await running

    async def _start_waiting(self) -> list[Any]:
        results = await self.settle()
        batch, self._waiting, self._waiting_bytes = self._waiting, [], 0
        self._running = asyncio.ensure_future(asyncio.to_thread(self._run, batch))
        return results

    def _run(self, batch: list[bytes]) -> list[Any]:
        return [self._function(piece) for piece in batch]


async def back_up(
    pieces: AsyncIterator[bytes],
    placer: ChunkPlacer,
    catalogue: Catalogue,
    remote: str,
    size: int,
    mode: int,
    mtime_ns: int,
) -> UploadResult:
    """Cut ``pieces`` (the file's bytes, in any pieces) into chunks, store the new ones and
    record the version. BackupError when the bytes are not ``size`` long (the file changed while
    it was read, or the sender stopped): then no version is recorded, and the chunks already
    stored stay known, so a retry sends nothing twice."""
    started = time.monotonic()
    snapshot = await asyncio.to_thread(catalogue.begin_snapshot)
    chunker = Chunker()
    digest = hashlib.sha256()
    received = 0
    slots = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
    stored: list[asyncio.Task[tuple[bytes, int]]] = []
    # Both release the GIL: the file's digest and its cuts take a core each while the next
    # piece arrives.
    hashing, cutting = _InThread(digest.update), _InThread(chunker.feed)

    async def dispatch(chunks: list[bytes]) -> None:
        # each chunk is handed over, not kept here: the placer lets its plaintext go once it
        # is encoded, while its fragments travel
        chunks.reverse()
        while chunks:
            await slots.acquire()
            if any(task.done() and task.exception() for task in stored):
                slots.release()
                break
            task = asyncio.create_task(placer.store_chunk(chunks.pop()))
            task.add_done_callback(lambda _: slots.release())
            stored.append(task)

    try:
        try:
            async for piece in pieces:
                received += len(piece)
                if received > size:
                    raise BackupError(
                        f"{remote}: more than the announced {size} bytes arrived "
                        "(the file grew while it was read); not backed up"
                    )
                await hashing.submit(piece)
                await dispatch(_joined(await cutting.submit(piece)))
            await hashing.drain()
            await dispatch(_joined(await cutting.drain()))
            if received != size:
                raise BackupError(
                    f"{remote}: {received} of the announced {size} bytes arrived (the file "
                    "changed while it was read, or the upload was stopped); not backed up"
                )
            await dispatch(chunker.finish())
            results = await asyncio.gather(*stored)
        except BaseException:
            for task in stored:
                task.cancel()
            await asyncio.gather(
                *stored, hashing.settle(), cutting.settle(), return_exceptions=True
            )
            raise
        version = await asyncio.to_thread(
            catalogue.add_version,
            snapshot,
            remote,
            size,
            mtime_ns,
            mode,
            digest.digest(),
            [chunk_id for chunk_id, _ in results],
        )
    except BaseException:
        await asyncio.to_thread(catalogue.end_snapshot, snapshot, False)
        raise
    await asyncio.to_thread(catalogue.end_snapshot, snapshot, True)
    sent = sum(sent_bytes for _, sent_bytes in results)
    return UploadResult(
        remote,
        version.version,
        size,
        len(results),
        sum(1 for _, sent_bytes in results if sent_bytes),
        sent,
        time.monotonic() - started,
    )


def _joined(cuts: list[list[bytes]]) -> list[bytes]:
    return [chunk for chunks in cuts for chunk in chunks]


async def restore(
    version: FileVersion, placer: ChunkPlacer, write: Callable[[bytes], Awaitable[None]]
) -> None:
    """Write the plaintext of ``version`` through ``write``, chunk by chunk in order, fetching
    up to ``CHUNKS_AHEAD`` ahead; BackupError if the result is not what was backed up.

    The last chunk is written only once the whole file's size and SHA-256 match the
    catalogue's, so a reader that stops at the announced size never holds a wrong whole file."""
    digest = hashlib.sha256()
    hashing = _InThread(digest.update)
    restored = 0
    held = b""
    queue: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue(CHUNKS_AHEAD)

    async def fetch_ahead() -> None:
        for chunk_id in version.chunk_ids:
            await queue.put(asyncio.create_task(placer.load_chunk(chunk_id)))
        await queue.put(None)

    feeder = asyncio.create_task(fetch_ahead())
    try:
        while (task := await queue.get()) is not None:
            plaintext = await task
            await hashing.submit(plaintext)
            restored += len(plaintext)
            if held:
                await write(held)
            held = plaintext
        await hashing.drain()
    finally:
        feeder.cancel()
        while not queue.empty():
            waiting = queue.get_nowait()
            if waiting is not None:
                waiting.cancel()
        await asyncio.gather(hashing.settle(), return_exceptions=True)
    if restored != version.size or digest.digest() != version.sha256:
        raise BackupError(f"{version.path}: the restored bytes differ from the backed-up file")
    if held:
        await write(held)


#: Decodes tried for one chunk before giving up: each bad fragment found costs a few.
MAX_DECODES = 64


async def read_chunk(
    indices: Sequence[int],
    k: int,
    fetch: Callable[[int], Awaitable[bytes]],
    decode: Callable[[dict[int, bytes]], Awaitable[bytes]],
    name: str,
) -> bytes:
    """A chunk from any ``k`` of its fragments ``indices``: fetch k at once; when some cannot
    be fetched (``fetch`` raises FragmentUnavailable) fetch others instead; when the chunk's tag
    does not verify (``decode`` raises a CodecError: a supplier returned wrong bytes), fetch one
    more and try the combinations not tried yet. BackupError names the chunk and the last
    reasons when fewer than k good fragments exist."""
    waiting = list(indices)
    fetched: dict[int, bytes] = {}
    failures: list[str] = []
    tried: set[tuple[int, ...]] = set()

    async def take(index: int) -> None:
        try:
            fetched[index] = await fetch(index)
        except FragmentUnavailable as exc:
            failures.append(f"fragment {index} {exc}")

    while True:
        while len(fetched) < k and waiting:
            batch, waiting = waiting[: k - len(fetched)], waiting[k - len(fetched) :]
            await asyncio.gather(*(take(index) for index in batch))
        for combination in itertools.combinations(sorted(fetched), k):
            if combination in tried or len(tried) >= MAX_DECODES:
                continue
            tried.add(combination)
            try:
                return await decode({index: fetched[index] for index in combination})
            except CodecError as exc:
                failures.append(f"fragments {list(combination)}: {exc}")
        if not waiting or len(tried) >= MAX_DECODES:
            raise BackupError(
                f"chunk {name[:16]}: fewer than {k} good fragments could be fetched ("
                + "; ".join(failures[-4:])
                + ")"
            )
        await take(waiting.pop(0))  # one more fragment, then the combinations it adds
