"""One p2p stream timed the same way for every benchmark that compares stream throughputs
(bench_p2p's direct stream, bench_proxy's relayed one): a difference between their figures is
then the path's, never the measurement's."""

from __future__ import annotations

import time

from bitdust.p2p.transport import P2PEndpoint

#: The size of each write into the stream, as a file upload's pieces.
CHUNK = 1024 * 1024


async def stream_rate(endpoint: P2PEndpoint, peer: str, size: int, kind: str = "blob") -> float:
    """Bytes per second of one ``size``-byte stream to ``peer``, from opening it until the
    receiving service has read it whole (``finish`` returns then). The session is opened before
    the clock starts, so no handshake is in the figure; the endpoint is closed afterwards."""
    data = b"x" * CHUNK
    try:
        await endpoint.connect(peer)
        started = time.perf_counter()
        stream = await endpoint.open_stream(peer, kind)
        for _ in range(size // CHUNK):
            await stream.write(data)
        await stream.finish()
        return size / (time.perf_counter() - started)
    finally:
        await endpoint.close()
