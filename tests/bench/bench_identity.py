"""identity server: ``GET /alice.xml`` with keep-alive from 50 connections (wrk) against nginx
serving the same file statically (targets: 0.3 of nginx directly, 0.25 through the nginx site),
and how the rate and the start grow with the identities stored.

Everything runs as users run it: a real node of role identity-server (its store filled before it
starts, as if it had been running), and one nginx master (one worker) with the site
``bitdust identity-server nginx-config`` prints plus a plain static server whose root is the
store's directory, so the baseline serves the very same ``alice.xml``. The node is configured as
behind nginx (its IDURLs say port 80), which lifts its per-address connection cap: wrk's 50
connections all come from 127.0.0.1. For the same reason the site's ``limit_conn`` (16 per client
address) is raised to the 50 connections; everything else is as rendered. Answers other than 2xx
are not counted as served. The three targets are measured in turns, so each sees the same load.

The curve's identities are synthetic: distinct names, each a valid signed identity the store
would accept, signed by a handful of 1024-bit keys (100,000 signatures of 2048-bit keys would
not fit the budget), written straight into the store's directory as it lays them out.

What limited the site: a template without upstream keep-alive made nginx open a new connection
to the node for every request, and accepting, setting up and closing a connection costs the node
(aiohttp on uvloop) far more than answering from its cache: a bare aiohttp handler answers some
7,000 requests/s with a connection each, against 29,000 on kept-alive ones. The site now keeps
its connections to the node (``upstream { keepalive 16; }``, ``proxy_set_header Connection ""``).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitdust.identity.document import Identity, format_date
from bitdust.identity.keys import (
    generate_private_key,
    load_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_openssh,
)
from bitdust.identity.signing import sign
from bitdust.identity.store import FILE_SUFFIX, IdentityStore
from tests.helpers import (
    NotifyListener,
    bitdust_command,
    cli,
    free_port,
    node_env,
    write_conf,
    write_nginx_conf,
)
from tests.identity.conftest import VECTORS

HOST = "host-a.com"
INSTANCE = "identity-server"
CONNECTIONS = 50
SYNTHETIC_KEYS = 4
SYNTHETIC_KEY_BITS = 1024
SHARING = "wrk (2 threads), the node and one nginx worker share the 2 cores"

#: nginx serving the stored identities as plain files: the limit the node is compared with.
STATIC_SITE = """\
server {{
    listen 127.0.0.1:{static_port};
    root {store};
    default_type application/xml;
}}
"""


def _progress(message: str) -> None:
    print(f"# bench_identity: {message}", file=sys.stderr, flush=True)


# -- wrk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    failed: int  # non-2xx/3xx answers and socket errors
    seconds: float

    @property
    def served_per_second(self) -> float:
        return (self.requests - self.failed) / self.seconds


def wrk(url: str, seconds: float, script: Path | None = None) -> Load:
    """Keep-alive GETs of ``url`` (or of the paths the Lua ``script`` picks) from
    :data:`CONNECTIONS` connections for ``seconds``."""
    wrk_binary = shutil.which("wrk")
    if wrk_binary is None:
        raise RuntimeError("wrk is not installed: 'make deps' (or apt-get install wrk) adds it")
    command = [wrk_binary, "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "2s"]
    command += ["-H", f"Host: {HOST}", "--latency", url]
    if script is not None:
        command += ["--script", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"wrk printed no request count for {url}:\n{out}")
    seconds_taken = float(done[2]) / (1000 if done[3] == "ms" else 1)
    failed = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors is not None:
        failed += sum(int(n) for n in errors.groups())
    return Load(int(done[1]), min(failed, int(done[1])), seconds_taken)


# -- the node -------------------------------------------------------------------------------------


class IdentityNode:
    """A node of role identity-server whose state lives under ``base``; started by
    :meth:`start`, which records how long it took to READY=1."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.web_port = free_port()
        tcp_port = free_port()
        write_conf(base, INSTANCE, {
            "services/identity-server/host": HOST,
            "services/identity-server/web-port": self.web_port,
            "services/identity-server/tcp-port": tcp_port,
            # behind nginx, as the guide runs it: IDURLs say port 80
            "services/identity-propagate/known-servers": f"{HOST}:80:{tcp_port}",
            "services/network/listen-host": "127.0.0.1",
            "services/entangled-dht/known-nodes": "genesis",
            "services/entangled-dht/udp-port": 0,
            "interface/api/rest-http-port": free_port(),
            "logs/level": "warning",
        })  # fmt: skip
        self.env = node_env(base)
        self.store_dir = base / "state" / INSTANCE / "identity-server"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_after = 0.0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.web_port}/{name}{FILE_SUFFIX}"

    def start(self) -> None:
        notify = NotifyListener()
        env = {**self.env, "NOTIFY_SOCKET": notify.path}
        log = open(self.base / f"{INSTANCE}.log", "ab")  # noqa: SIM115 - the child holds it
        started = time.perf_counter()
        try:
            self.process = subprocess.Popen(
                [*bitdust_command(), "--instance", INSTANCE, "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            notify.wait_for("READY=1", 120, self.process)
            self.ready_after = time.perf_counter() - started
        finally:
            log.close()
            notify.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @contextmanager
    def running(self) -> Iterator[IdentityNode]:
        try:
            self.start()
            yield self
        finally:
            self.stop()


def store_alice(store_dir: Path) -> bytes:
    """Alice's identity, accepted by the store as the TCP intake would; returns its XML."""
    key = load_private_key(VECTORS / "test_key.pem")
    unsigned = Identity(
        sources=(f"http://{HOST}/alice.xml",),
        contacts=("tcp://127.0.0.1:7771",),
        date=format_date(datetime.date.today()),
        publickey=public_key_to_openssh(key),
    )
    document = sign(unsigned, key).to_xml()
    IdentityStore(store_dir, HOST, 80).submit(document, time.time())
    return document


# -- nginx ----------------------------------------------------------------------------------------


class Nginx:
    """One nginx master (``daemon off``, one worker) with the node's site on ``site_port`` and a
    static server of ``store`` on ``static_port``."""

    def __init__(self, base: Path, node: IdentityNode) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError(
                "nginx is not installed, so the identity server cannot be compared with it: "
                "'make deps' (or apt-get install nginx-light) adds it"
            )
        self.binary = binary
        self.base = base
        self.site_port = free_port()
        self.static_port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        site = cli(node.env, "--instance", INSTANCE, "identity-server", "nginx-config",
                   "--listen", f"127.0.0.1:{self.site_port}", check=True).stdout  # fmt: skip
        site, raised = re.subn(r"limit_conn (\S+) \d+;", rf"limit_conn \1 {CONNECTIONS};", site)
        if raised != 1:
            raise RuntimeError(f"the nginx site has no single limit_conn to raise:\n{site}")
        sites = base / "sites"
        sites.mkdir(exist_ok=True)
        (sites / "site.conf").write_text(site)
        (sites / "static.conf").write_text(
            STATIC_SITE.format(static_port=self.static_port, store=node.store_dir)
        )
        self.conf = write_nginx_conf(
            base, f"{sites}/*.conf", run_as_root=os.geteuid() == 0, worker_connections=1024
        )
        check = subprocess.run([binary, "-t", "-q", "-c", str(self.conf)],
                               capture_output=True, text=True)  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(
                f"nginx cannot run here (it needs to be root or to own {base}): "
                f"{check.stderr.strip()}"
            )
        self.process = subprocess.Popen(
            [binary, "-c", str(self.conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )
        self._wait_until_serving()

    def url(self, port: int, name: str) -> str:
        return f"http://127.0.0.1:{port}/{name}{FILE_SUFFIX}"

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url(self.static_port, "alice"), timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.base / "error.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)


# -- synthetic identities -------------------------------------------------------------------------


def synthetic_name(index: int) -> str:
    return f"user{index:07d}"


RANDOM_NAMES = """\
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("seed", threads)
end
function init(args)
    math.randomseed(seed)
end
function request()
    return wrk.format(nil, string.format("/user%07d.xml", math.random(0, COUNT - 1)))
end
"""


def _write_synthetic(store_dir: str, keys_pem: list[bytes], start: int, stop: int) -> None:
    """Identities ``start``..``stop - 1``, signed round-robin by the keys, written as the store
    writes them (``<name>.xml``, canonical form); a worker process runs this."""
    keys = [private_key_from_pem(pem) for pem in keys_pem]
    publickeys = [public_key_to_openssh(key) for key in keys]
    today = format_date(datetime.date.today())
    for index in range(start, stop):
        name = synthetic_name(index)
        which = index % len(keys)
        unsigned = Identity(
            sources=(f"http://{HOST}/{name}{FILE_SUFFIX}",),
            contacts=(f"tcp://10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}:7771",),
            date=today,
            publickey=publickeys[which],
        )
        document = sign(unsigned, keys[which]).to_xml()
        Path(store_dir, f"{name}{FILE_SUFFIX}").write_bytes(document)


def fill_store(store_dir: Path, keys_pem: list[bytes], start: int, stop: int) -> None:
    """Write identities ``start``..``stop - 1`` with one worker process per core."""
    workers = os.cpu_count() or 1
    step = -(-(stop - start) // workers)
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        parts = [
            pool.submit(_write_synthetic, str(store_dir), keys_pem, first, min(first + step, stop))
            for first in range(start, stop, step)
        ]
        for part in parts:
            part.result()


# -- the benchmark --------------------------------------------------------------------------------


def _limit_figures(base: Path, smoke: bool) -> list[dict[str, Any]]:
    node = IdentityNode(base / "node")
    store_alice(node.store_dir)
    seconds = 1 if smoke else 5
    repeats = 1 if smoke else 3
    loads: dict[str, list[Load]] = {"static": [], "direct": [], "site": []}
    with node.running():
        nginx = Nginx(base / "nginx", node)
        try:
            urls = {
                "static": nginx.url(nginx.static_port, "alice"),
                "direct": node.url("alice"),
                "site": nginx.url(nginx.site_port, "alice"),
            }
            for repeat in range(repeats):
                for target, url in urls.items():
                    load = wrk(url, seconds)
                    loads[target].append(load)
                    _progress(f"round {repeat + 1}: {target} {load.served_per_second:.0f} req/s "
                              f"({load.failed} failed of {load.requests})")  # fmt: skip
        finally:
            nginx.stop()
    rate = {target: statistics.median(x.served_per_second for x in runs)
            for target, runs in loads.items()}  # fmt: skip
    failed = {target: sum(x.failed for x in runs) for target, runs in loads.items()}
    common = (f"wrk -c{CONNECTIONS} -d{seconds}s keep-alive, median of {repeats} interleaved "
              f"runs; nginx static {rate['static']:.0f} req/s; {SHARING}")  # fmt: skip
    return [
        {"name": "identity.server_rps_direct", "figure": rate["direct"], "unit": "req/s",
         "limit": 0.3 * rate["static"], "target": "above",
         "note": f"node's web port; limit = 0.3 x nginx static; {failed['direct']} failed; "
                 f"{common}"},
        {"name": "identity.server_rps_nginx_site", "figure": rate["site"], "unit": "req/s",
         "limit": 0.25 * rate["static"], "target": "above",
         "note": f"the rendered nginx site (connections to the node kept alive), its "
                 f"limit_conn per address raised from 16 to "
                 f"{CONNECTIONS} (wrk's connections share one address); {failed['site']} failed; "
                 f"limit = 0.25 x nginx static; {common}"},
    ]  # fmt: skip


def _curves(base: Path, smoke: bool) -> list[dict[str, Any]]:
    sizes = (100, 1_000) if smoke else (1_000, 100_000)
    seconds = 1 if smoke else 2
    node = IdentityNode(base / "curve")
    node.store_dir.mkdir(parents=True)
    keys_pem = [private_key_to_pem(generate_private_key(SYNTHETIC_KEY_BITS))
                for _ in range(SYNTHETIC_KEYS)]  # fmt: skip
    points: list[dict[str, Any]] = []
    stored = 0
    for size in sizes:
        started = time.perf_counter()
        fill_store(node.store_dir, keys_pem, stored, size)
        stored = size
        _progress(f"{size} identities written in {time.perf_counter() - started:.1f} s")
        script = base / "random-names.lua"
        script.write_text(RANDOM_NAMES.replace("COUNT", str(size)))
        with node.running():
            load = wrk(node.url(synthetic_name(size // 2)), seconds)
            spread = wrk(node.url(synthetic_name(0)), seconds, script)
        _progress(f"{size} identities: ready in {node.ready_after:.2f} s, one "
                  f"{load.served_per_second:.0f} req/s ({load.failed} failed), random "
                  f"{spread.served_per_second:.0f} req/s ({spread.failed} failed)")  # fmt: skip
        points += [
            {"curve": "identity server requests/s by stored identities", "x": size,
             "x_unit": "identities", "figure": load.served_per_second, "unit": "req/s",
             "note": f"GET of one, wrk -c{CONNECTIONS} -d{seconds}s, node's web port; "
                     f"{load.failed} failed; wrk and the node share the 2 cores"},
            {"curve": "identity server requests/s by stored identities, random names", "x": size,
             "x_unit": "identities", "figure": spread.served_per_second, "unit": "req/s",
             "note": f"GET of a random one each time, wrk -c{CONNECTIONS} -d{seconds}s; the "
                     f"store's 8 MiB cache holds some 8,000 of these 1 KB identities, the others "
                     f"are read from disk; {spread.failed} failed"},
            {"curve": "identity server start by stored identities", "x": size,
             "x_unit": "identities", "figure": node.ready_after, "unit": "s",
             "note": "start to READY=1; the store lists its directory (no signature checks)"},
        ]  # fmt: skip
    return points


def run(smoke: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bitdust-bench-identity-") as temp:
        base = Path(temp)
        return _limit_figures(base, smoke) + _curves(base, smoke)


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
