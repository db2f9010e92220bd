"""p2p streams timed the same way for every benchmark that compares stream throughputs
(bench_p2p's direct stream, bench_proxy's relayed ones): a difference between their figures is
then the path's, never the measurement's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bitdust.p2p.transport import P2PEndpoint

#: The size of each write into a stream, as a file upload's pieces.
CHUNK = 1024 * 1024


async def stream_rate(endpoint: P2PEndpoint, peer: str, size: int, kind: str = "blob") -> float:
    """Bytes per second of one ``size``-byte stream to ``peer``."""
    return await streams_rate(endpoint, [peer], size, kind)


async def streams_rate(
    endpoint: P2PEndpoint, peers: Sequence[str], size: int, kind: str = "blob"
) -> float:
    """Bytes per second of one ``size``-byte stream to each of ``peers`` at once, from opening
    them until every receiving service has read its stream whole (``finish`` returns then). The
    sessions are opened before the clock starts, so no handshake is in the figure; the endpoint
    is closed afterwards."""
    try:
        await asyncio.gather(*(endpoint.connect(peer) for peer in peers))
        started = time.perf_counter()
        await asyncio.gather(*(_send(endpoint, peer, size, kind) for peer in peers))
        return size * len(peers) / (time.perf_counter() - started)
    finally:
        await endpoint.close()


async def _send(endpoint: P2PEndpoint, peer: str, size: int, kind: str) -> None:
    data = b"x" * CHUNK
    stream = await endpoint.open_stream(peer, kind)
    for start in range(0, size, CHUNK):
        await stream.write(data if size - start >= CHUNK else data[: size - start])
    await stream.finish()
