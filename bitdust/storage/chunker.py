"""Content-defined chunks of a stream fed piece by piece (DESIGN §10), with bounded memory.

A sans-IO core: it is fed bytes and returns chunks, and never reads a file or a socket. The chunks
are exactly those FastCDC cuts from the whole input at once, whatever the sizes of the pieces, so
an insertion in a file shifts no chunk boundary after it and unchanged chunks keep their ids.
It must never hold a whole file: at most ``1.5 * max_size`` bytes stay buffered.
"""

from __future__ import annotations

MIN_CHUNK = 1024 * 1024
AVG_CHUNK = 4 * 1024 * 1024
MAX_CHUNK = 16 * 1024 * 1024


class Chunker:
    """Cut one stream into content-defined chunks; ready for a new stream after ``finish``.

    FastCDC decides a cut from at most ``max_size`` bytes after the chunk's start, and a cut it
    finds before the end of the buffer it was given is the cut it would find in the whole input.
    So the buffer is cut once it holds ``1.5 * max_size`` bytes: every chunk but the one ending at
    the buffer's end (which more input may extend) is final; that last one (at most ``max_size``) is
    carried over. ``buffered`` thus never exceeds ``1.5 * max_size``, however large a piece is fed,
    and each cut takes at least ``max_size / 2`` new bytes, so a carried chunk is scanned again at
    most twice. A larger buffer would cost no less CPU here but hold more, twice over: the buffer
    and the chunks one cut returns, which wait in memory for their turn to be encoded.
    The buffer grows once to what the stream needs and is then refilled in place: memory mapped
    afresh for every piece would cost a page fault per 4 KiB, more than the cutting itself.
    Not thread-safe: one chunker per stream.
    """

    def __init__(
        self, min_size: int = MIN_CHUNK, avg_size: int = AVG_CHUNK, max_size: int = MAX_CHUNK
    ) -> None:
        from pyfastcdc import FastCDC  # at first use: an idle node goes without its memory

        # FastCDC checks the sizes (min 64 B to 1 MiB, avg 256 B to 4 MiB, max 1 KiB to 16 MiB).
        self._fastcdc = FastCDC(avg_size, min_size=min_size, max_size=max_size)
        self._limit = max_size + max_size // 2
        # grows to what the stream needs (at most the limit) and never shrinks
        self._buffer = bytearray()
        self._filled = 0

    @property
    def buffered(self) -> int:
        """Bytes held back for chunks not yet complete (at most ``1.5 * max_size``)."""
        return self._filled

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take the next piece of the stream; return the chunks it completed, in order."""
        chunks: list[bytes] = []
        with memoryview(data) as piece:
            taken = 0
            while taken < len(piece):
                part = piece[taken : taken + self._limit - self._filled]
                self._buffer[self._filled : self._filled + len(part)] = part
                self._filled += len(part)
                taken += len(part)
                if self._filled == self._limit:
                    chunks += self._cut(final=False)
        return chunks

    def finish(self) -> list[bytes]:
        """End the stream: return the chunks left (``[]`` if the stream was empty)."""
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[bytes]:
        with memoryview(self._buffer) as buffer, buffer[: self._filled] as filled:
            bounds = [(chunk.offset, chunk.length) for chunk in self._fastcdc.cut_buf(filled)]
            if not final:
                bounds.pop()  # ends at the buffer's end: more input may move its cut
            chunks = [bytes(filled[offset : offset + length]) for offset, length in bounds]
            done = sum(length for _, length in bounds)
            buffer[: self._filled - done] = buffer[done : self._filled]  # the carried-over chunk
        self._filled -= done
        return chunks
