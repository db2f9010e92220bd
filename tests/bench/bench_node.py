"""The node's own figures: start to READY=1, idle RSS, REST requests per second.

Each limit comes from a baseline measured in the same run:
- start to READY=1 must stay under 3x the time a bare interpreter takes to import the libraries
  the node needs (the cost nobody can avoid);
- idle RSS under 1.5x that bare interpreter's RSS once it has imported them;
- `process/health` requests per second (secret checked, envelope built) at least half of what a
  bare aiohttp server answers on the same loop, to the same client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers import NotifyListener, bitdust_command, free_port, node_env, write_conf

LIBRARIES = "import aiohttp.web, cryptography.hazmat.primitives.asymmetric.ed25519, lxml.etree, "
LIBRARIES += "msgpack, sqlite3, uvloop, sdnotify"

BARE_SERVER = """
import sys, uvloop
from aiohttp import web
async def health(request):
    return web.json_response({"status": "OK", "result": {"ready": True}})
app = web.Application()
app.router.add_get("/process/health/v1", health)
uvloop.run(web._run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None,
                        access_log=None))
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def descendants_rss(pid: int) -> int:
    """RSS of a process and its children (the onefile bootloader runs the node as a child)."""
    total = rss_kib(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += descendants_rss(int(child))
    return total


def bare_import() -> tuple[float, int]:
    """Seconds to import the node's libraries in a fresh interpreter, and its RSS after."""
    code = f"{LIBRARIES}\nimport os, sys\nsys.stdout.write(open('/proc/self/status').read())"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    rss = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("VmRSS"))
    return elapsed, rss


class StartedNode:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        write_conf(base, "dht-seed", {
            "services/entangled-dht/known-nodes": "genesis",
            "services/entangled-dht/udp-port": 0,
            "interface/api/rest-http-port": self.port,
            "logs/level": "warning",
        })  # fmt: skip
        env = node_env(base)
        self.notify = NotifyListener()
        env["NOTIFY_SOCKET"] = self.notify.path
        started = time.perf_counter()
        self.process = subprocess.Popen([*bitdust_command(), "--instance", "dht-seed", "run"],
                                        env=env, stderr=subprocess.DEVNULL)  # fmt: skip
        self.notify.wait_for("READY=1", 60, self.process)
        self.ready_after = time.perf_counter() - started
        self.secret = (base / "run" / "dht-seed" / "api.secret").read_text().strip()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)
        self.notify.close()


async def requests_per_second(port: int, headers: dict[str, str], total: int) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{port}/process/health/v1"
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.get(url) as response:
                    assert response.status == 200
                    await response.read()

        await worker(20)  # warm up the connection pool
        workers = 8
        started = time.perf_counter()
        await asyncio.gather(*(worker(total // workers) for _ in range(workers)))
        return (total // workers * workers) / (time.perf_counter() - started)


def bare_server_rps(total: int) -> float:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                return asyncio.run(requests_per_second(port, {}, total))
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)


def run(smoke: bool) -> list[dict[str, Any]]:
    repeats = 1 if smoke else 5
    requests = 200 if smoke else 5000
    imports = [bare_import() for _ in range(repeats)]
    import_seconds = statistics.median(t for t, _ in imports)
    import_rss = statistics.median(r for _, r in imports)
    ready, rss, rps, bare = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bitdust-bench-") as temp:
        for index in range(repeats):
            node = StartedNode(Path(temp) / str(index))
            try:
                ready.append(node.ready_after)
                time.sleep(0.5 if smoke else 2)
                rss.append(descendants_rss(node.process.pid))
                headers = {"api_secret": node.secret}
                rps.append(asyncio.run(requests_per_second(node.port, headers, requests)))
            finally:
                node.stop()
            bare.append(bare_server_rps(requests))  # interleaved, so both see the same load
    bare_rps = statistics.median(bare)
    binary = "frozen binary" if os.environ.get("BITDUST_BIN") else "source tree"
    return [
        {"name": "node.start_to_ready", "figure": statistics.median(ready), "unit": "s",
         "limit": 3 * import_seconds, "target": "below",
         "note": f"{binary}; limit = 3 x bare import of the node's libraries"},
        {"name": "node.idle_rss", "figure": statistics.median(rss), "unit": "KiB",
         "limit": 1.5 * import_rss, "target": "below",
         "note": "limit = 1.5 x RSS of a bare interpreter that imported the same libraries"},
        {"name": "api.process_health_rps", "figure": statistics.median(rps), "unit": "req/s",
         "limit": 0.5 * bare_rps, "target": "above",
         "note": "limit = half of a bare aiohttp server's rate to the same client"},
    ]  # fmt: skip


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
