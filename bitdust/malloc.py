"""glibc's allocator, kept from hoarding the chunk buffers a node frees.

A customer allocates and frees buffers of up to 16 MiB (chunks, ciphertexts, fragments) in
worker threads. By default glibc raises its mmap threshold each time a large block is freed and
gives each thread an arena of its own, so those buffers come from arenas that keep freed memory:
a customer's RSS grew by about 100 MiB per 256 MB uploaded. A fixed threshold maps every buffer
above it on its own and unmaps it when freed, and two arenas bound what smaller blocks hold.

Mapping each buffer afresh costs page faults: a third of the upload rate and half of the
download rate on 4 KiB pages. On transparent huge pages (``TUNABLES``, which glibc reads only
when a process starts, so the launchers pass them: ``bitdust daemon`` and the systemd unit) the
rates are those of the default allocator.

The launchers pass the threshold and the arena bound as tunables too, so a node they start
need not load ctypes (0.3 MiB of every node) to set them; a node started otherwise sets them
with mallopt(3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt(3)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 * 1024
ARENA_MAX = 2
TUNABLES = (
    "glibc.malloc.hugetlb=1"
    f":glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.arena_max={ARENA_MAX}"
)
#: the tunables that stand for the mallopt calls below (the operator's own values included)
_BOUNDING = {"glibc.malloc.mmap_threshold", "glibc.malloc.arena_max"}


def _tunable_names(value: str) -> set[str]:
    return {item.partition("=")[0] for item in value.split(":") if item}


def bound_allocator_memory() -> bool:
    """Apply the settings above unless this process started with them as tunables; False (and
    a debug line) where the C library is not glibc."""
    if _tunable_names(os.environ.get("GLIBC_TUNABLES", "")) >= _BOUNDING:
        return True
    import ctypes  # only here: see the module's docstring
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in %s: the allocator keeps its defaults", name)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))


def with_tunables(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a node process: ``TUNABLES`` added to the operator's own GLIBC_TUNABLES."""
    own = [item for item in env.get("GLIBC_TUNABLES", "").split(":") if item]
    names = _tunable_names(":".join(own))
    ours = [item for item in TUNABLES.split(":") if item.partition("=")[0] not in names]
    return {**env, "GLIBC_TUNABLES": ":".join(own + ours)}
