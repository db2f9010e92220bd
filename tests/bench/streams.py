"""p2p streams timed the same way for every benchmark that compares stream throughputs
(bench_p2p's direct stream, bench_proxy's relayed ones): a difference between their figures is
then the path's, never the measurement's.

Every process of those figures, senders included, is a child started as the unit starts a node
(glibc's tunables of :mod:`bitdust.malloc`): a stream's rate depends on the allocator, as the
node's does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import uvloop

from bitdust.malloc import with_tunables
from bitdust.p2p.transport import P2PEndpoint

#: The size of each write into a stream, as a file upload's pieces.
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """A transfer's bytes per second, and the CPU seconds that the process which timed it spent
    over the same span (wall-clock rates on a shared machine move from run to run; what each
    side spends per byte shows where the time went)."""

    rate: float
    cpu: float


class Span:
    """Wall-clock and CPU time from its creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def measured(self, size: int) -> Measured:
        """``size`` bytes moved since the span began."""
        return Measured(size / (time.perf_counter() - self.wall), time.process_time() - self.cpu)


async def stream_rate(endpoint: P2PEndpoint, peer: str, size: int, kind: str = "blob") -> Measured:
    """One ``size``-byte stream to ``peer``."""
    return await streams_rate(endpoint, [peer], size, kind)


async def streams_rate(
    endpoint: P2PEndpoint, peers: Sequence[str], size: int, kind: str = "blob"
) -> Measured:
    """One ``size``-byte stream to each of ``peers`` at once, from opening them until every
    receiving service has read its stream whole (``finish`` returns then). The sessions are
    opened before the clock starts, so no handshake is in the figure; the endpoint is closed
    afterwards."""
    try:
        await asyncio.gather(*(endpoint.connect(peer) for peer in peers))
        span = Span()
        await asyncio.gather(*(_send(endpoint, peer, size, kind) for peer in peers))
        return span.measured(size * len(peers))
    finally:
        await endpoint.close()


async def _send(endpoint: P2PEndpoint, peer: str, size: int, kind: str) -> None:
    data = b"x" * CHUNK
    stream = await endpoint.open_stream(peer, kind)
    for start in range(0, size, CHUNK):
        await stream.write(data if size - start >= CHUNK else data[: size - start])
    await stream.finish()


def start_child(module: str, *args: object) -> subprocess.Popen:
    """``python -m module args``, on the node's allocator, once it printed ``ready``; its
    stdin is a pipe (the bench's children end with it, or with their work)."""
    child = subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=with_tunables(os.environ),
    )
    assert child.stdout is not None
    if child.stdout.readline() != b"ready\n":
        child.kill()
        raise RuntimeError(f"{module} {args[0]} did not start (exit {child.wait()})")
    return child


def stop(child: subprocess.Popen) -> bytes:
    """Close the child's stdin and wait for it; what it printed after ``ready``. One still
    running 30 s later is killed, so no run leaves a process behind."""
    try:
        printed, _ = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    return printed


def measured_rate(module: str, *args: object) -> Measured:
    """What a sender child (``python -m module args``, which calls :func:`report_rate`)
    measured."""
    sender = start_child(module, *args)
    try:
        assert sender.stdout is not None
        rate, cpu = sender.stdout.readline().split()
        return Measured(float(rate), float(cpu))
    finally:
        stop(sender)


def report_rate(sending: Coroutine[Any, Any, Measured]) -> None:
    """A sender child's side of :func:`measured_rate`: ``ready``, then what ``sending``
    measured (within 120 s)."""
    print("ready", flush=True)
    measured = uvloop.run(asyncio.wait_for(sending, 120))
    print(measured.rate, measured.cpu)


def with_ceiling(
    row: dict[str, Any], ceiling: float, ceiling_work: str, label: str = "ceiling"
) -> list[dict[str, Any]]:
    """A throughput ``row`` and its ``label``'s row: the same processes doing only
    ``ceiling_work``, against the row's own limit, so that one below it shows the target out of
    reach in that run."""
    name = row["name"]
    ceiling_name = name.replace("_throughput", f"_{label}")
    return [
        {**row, "note": f"{row['note']}; it reached {row['figure'] / ceiling:.2f} of its "
                        f"{label.upper()} ({ceiling_name})"},
        {"name": ceiling_name, "figure": ceiling, "unit": row["unit"], "limit": row["limit"],
         "target": row["target"],
         "note": f"{label.upper()} of {name}, not a path of the node: {ceiling_work}; limit = the "
                 f"same as {name}'s: below it, that target was out of reach on this machine in "
                 "this run"},
    ]  # fmt: skip
