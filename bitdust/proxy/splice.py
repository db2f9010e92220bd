"""Where a relayed pair's bytes wait between two sockets: a pipe, moved with splice(2), or memory.

The router forwards ciphertext it never reads, so it need not copy it through Python at all:
``splice`` moves a socket's bytes into a pipe and from the pipe into the partner's socket inside
the kernel, which takes a fifth off the router's CPU per byte (the rest is the kernel's TCP).
Pipes are a per-user resource (the kernel charges their pages to ``fs.pipe-user-pages-soft``,
64 MiB by default), so a :class:`PipePool` keeps a few dozen, lent to a direction only while
bytes wait in it; when none is free, or the kernel refuses one, the bytes wait in a
:class:`MemoryBuffer` instead, copied through user space as before.

Both buffers raise :class:`BlockingIOError` when the socket cannot go on now, and any other
:class:`OSError` when it is gone; ``fill`` returns 0 at the end of the stream.
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol

#: What one direction of a pair holds at most, in a pipe or in memory: about what the event loop
#: reads at once, and what an asyncio transport held before its flow control paused the sender.
HOLD = 256 * 1024
PIPES = 64  # 16 MiB of pipes at most: a quarter of the user's soft limit on pipe pages
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class Buffer(Protocol):
    held: int

    def fill(self, fd: int) -> int:
        """Read what ``fd`` has (the buffer is empty); 0 at its end."""
        ...

    def drain(self, fd: int) -> int:
        """Write what is held to ``fd``, as much as it takes now."""
        ...


class PipeBuffer:
    def __init__(self, read_end: int, write_end: int, capacity: int) -> None:
        self.read_end, self.write_end, self.capacity = read_end, write_end, capacity
        self.held = 0

    def fill(self, fd: int) -> int:
        moved = os.splice(fd, self.write_end, self.capacity, flags=_SPLICE_FLAGS)
        self.held += moved
        return moved

    def drain(self, fd: int) -> int:
        moved = os.splice(self.read_end, fd, self.held, flags=_SPLICE_FLAGS)
        if moved == 0:
            raise BlockingIOError  # a socket that took nothing: wait until it is writable
        self.held -= moved
        return moved

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class MemoryBuffer:
    def __init__(self, initial: bytes = b"") -> None:
        self._data = bytearray(max(HOLD, len(initial)))
        self._data[: len(initial)] = initial
        self._view = memoryview(self._data)
        self._start, self._end = 0, len(initial)

    @property
    def held(self) -> int:
        return self._end - self._start

    def fill(self, fd: int) -> int:
        self._start = 0
        self._end = os.readv(fd, [self._view])
        return self._end

    def drain(self, fd: int) -> int:
        moved = os.write(fd, self._view[self._start : self._end])
        if moved == 0:
            raise BlockingIOError
        self._start += moved
        return moved


class PipePool:
    """At most ``limit`` pipes, lent out while bytes wait in them and kept open between loans."""

    def __init__(self, limit: int = PIPES, size: int = HOLD) -> None:
        self.limit, self.size = limit, size
        self._free: list[PipeBuffer] = []
        self.open = 0

    def take(self) -> Buffer:
        if self._free:
            return self._free.pop()
        if self.open < self.limit:
            try:
                pipe = self._new_pipe()
            except OSError:  # out of descriptors or pipe pages: memory still works
                return MemoryBuffer()
            self.open += 1
            return pipe
        return MemoryBuffer()

    def _new_pipe(self) -> PipeBuffer:
        read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            capacity = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, self.size)
        except OSError:  # over the user's pipe pages: the pipe keeps its default size
            capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        return PipeBuffer(read_end, write_end, capacity)

    def give(self, buffer: Buffer) -> None:
        """Take a buffer back; bytes still in it are dropped (their receiver is gone)."""
        if not isinstance(buffer, PipeBuffer):
            return
        if buffer.held:
            buffer.close()
            self.open -= 1
        else:
            self._free.append(buffer)

    def close(self) -> None:
        for pipe in self._free:
            pipe.close()
        self.open -= len(self._free)
        self._free.clear()
