"""The node's allocator: chunk-sized buffers freed in worker threads go back to the system once
a transfer ends (without that a customer's RSS grew by about 100 MiB per 256 MB uploaded)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import concurrent.futures, os, sys
from bitdust.malloc import bound_allocator_memory, release_free_memory

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

assert bound_allocator_memory()
before = rss_mib()

def churn(seed):
    kept = []
    for size in range(40):
        kept.append(os.urandom((1 + (seed + size) % 16) * 1024 * 1024))
        if len(kept) > 3:
            kept.pop(0)
    return len(kept)

with concurrent.futures.ThreadPoolExecutor(4) as pool:
    list(pool.map(churn, range(8)))
release_free_memory()
print(round(rss_mib() - before))
"""


def test_chunk_buffers_freed_in_threads_leave_no_resident_memory() -> None:
    grown = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=60
    )
    # 4 threads held up to 3 buffers of up to 16 MiB each (about 190 MiB at most at once)
    assert int(grown.stdout) < 16, grown.stdout
