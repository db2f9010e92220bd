"""glibc's allocator, tuned for a node that handles chunks of up to 16 MiB in worker threads.

By default glibc raises its mmap threshold each time a large block is freed (up to 32 MiB) and
gives every thread that allocates its own arena: chunk buffers then come from arenas that keep
the freed memory, and a customer's RSS grew by about 100 MiB per 256 MB uploaded. A fixed
threshold makes every buffer above it a mapping of its own, returned to the system when freed,
and two arenas bound what the worker threads can hold on to.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt(3) parameters
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 * 1024
ARENA_MAX = 2


def bound_allocator_memory() -> bool:
    """Apply the settings above; False (and a debug line) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in %s: the allocator keeps its defaults", name)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))
