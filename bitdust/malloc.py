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

Fixing the threshold also fixes the trim threshold, at 128 KiB, while on huge pages the heap grows
by 2 MiB: a process that makes and frees 64 KiB blocks at a steady rate (a p2p stream's records)
gave the top of its heap back and faulted in a fresh, zeroed huge page about every twenty records
(strace: 1,643 brk and 826 madvise calls per GiB a stream sender sent). The top of a heap is trimmed
only above two huge pages instead (``TRIM_THRESHOLD``; 2 brk calls for that GiB): at most that much
free memory stays resident per arena. A stream's sender spent a tenth less CPU, and the stream ran
about 15 % faster.

The launchers pass the thresholds and the arena bound as tunables too, so a node they start
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
M_TRIM_THRESHOLD = -1
MMAP_THRESHOLD = 256 * 1024
ARENA_MAX = 2
TRIM_THRESHOLD = 4 * 1024 * 1024
#: what the mallopt calls below set, by tunable name
_SETTINGS = {
    "glibc.malloc.mmap_threshold": (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    "glibc.malloc.arena_max": (M_ARENA_MAX, ARENA_MAX),
    "glibc.malloc.trim_threshold": (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
}
TUNABLES = ":".join(
    ["glibc.malloc.hugetlb=1", *(f"{name}={value}" for name, (_, value) in _SETTINGS.items())]
)


def _tunable_names(value: str) -> set[str]:
    return {item.partition("=")[0] for item in value.split(":") if item}


def bound_allocator_memory() -> bool:
    """Apply the settings above unless this process started with them as tunables; False (and
    a debug line) where the C library is not glibc."""
    if _tunable_names(os.environ.get("GLIBC_TUNABLES", "")) >= _SETTINGS.keys():
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
    return all([bool(mallopt(option, value)) for option, value in _SETTINGS.values()])


def with_tunables(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a node process: ``TUNABLES`` added to the operator's own GLIBC_TUNABLES."""
    own = [item for item in env.get("GLIBC_TUNABLES", "").split(":") if item]
    names = _tunable_names(":".join(own))
    ours = [item for item in TUNABLES.split(":") if item.partition("=")[0] not in names]
    return {**env, "GLIBC_TUNABLES": ":".join(own + ours)}
