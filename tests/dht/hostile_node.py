"""A DHT node in its own process for the hostile-input measurements: its CPU time is its own.

Protocol on stdin/stdout, one line each: it prints its UDP port; ``go`` starts the CPU clock,
``stop`` prints the CPU seconds spent since ``go`` and the node's figures as JSON, then exits.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    from bitdust.dht.transport import start_dht

    endpoint = await start_dht(sys.argv[1], 0, None)
    print(endpoint.address[1], flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    started = 0.0
    while line := (await reader.readline()).decode().strip():
        if line == "go":
            started = _cpu()
        elif line == "stop":
            out = {"cpu": _cpu() - started, **endpoint.node.stats()}
            print(json.dumps(out), flush=True)
            break
    await endpoint.close()


if __name__ == "__main__":
    asyncio.run(main())
