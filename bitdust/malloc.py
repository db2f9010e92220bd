"""glibc's allocator, kept from hoarding the chunk buffers a node frees.

A customer allocates and frees buffers of up to 16 MiB (chunks, ciphertexts, fragments) in
worker threads. By default glibc gives each thread an arena of its own and raises its mmap
threshold each time a large block is freed, so those buffers come from arenas that keep freed
memory: a customer's RSS grew by about 100 MiB per 256 MB uploaded. Two arenas bound how many
such heaps exist, and :func:`release_free_memory` hands their free pages back after each
transfer. (Mapping every large buffer on its own, with a fixed mmap threshold, also bounds the
memory but costs a third of the upload rate and half of the download rate in page faults.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt(3)
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc allocator in %s: its defaults stay", name)
        return None
    return libc


_LIBC = _libc()


def bound_allocator_memory() -> bool:
    """At most ARENA_MAX arenas; False where the C library is not glibc."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX))


def release_free_memory() -> None:
    """Return the arenas' free pages to the system (a few milliseconds: call it from a worker
    thread, after a transfer)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
