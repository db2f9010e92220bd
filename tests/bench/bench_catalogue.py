"""storage with many small files and a large catalogue, on the guide's test network (four
suppliers on 127.0.1.1-127.0.1.4 and a customer on 127.0.1.5, real processes, k = 2 of N = 4).

- ``storage.small_files_backup_rate``: a tree of small random files backed up with
  ``bitdust file upload DIR`` as a user does, against the same files through ``back_up`` in this
  process without the network (the baseline of bench_storage: real codec, fragments written to
  disk and Noise-encrypted).
- Curves ``file list by catalogued files`` and ``single-file restore by catalogued files``: the
  customer's catalogue is grown cheaply (one small file uploaded for real, then, with the
  customer stopped, more versions of the same content added through :class:`Catalogue`'s own
  methods: identical content is one chunk, so this is a catalogue a user could have), and
  ``bitdust --json file list`` and ``bitdust file download`` of one file are timed.

Starts real nodes on the guide's fixed addresses and ports: run it under the shared test lock.
Progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bitdust.cli_transfer import LIST_PAGE, UPLOADS_IN_FLIGHT
from bitdust.storage.backup import back_up
from bitdust.storage.catalogue import Catalogue
from bitdust.storage.customer import CATALOGUE_FILE
from tests.bench.bench_storage import SUPPLIER_NAMES, NoisePlacer, file_pieces
from tests.helpers import CUSTOMER_HOST, HOSTS, GuideHost, bitdust_command, cli, wait_for
from tests.storage.inprocess import InProcessPlacer
from tests.storage.test_guide_storage import start_customer, start_suppliers

K, N = 2, 4
SMALL_FILE = 4096
FILES_PER_DIRECTORY = 100
SEED_REMOTE = "catalogue/seed.bin"
#: Files of the tree the in-process baseline backs up (its rate per file is steady by then; all
#: 10,000 would cost the full run 25 s of its 150 s budget).
BASELINE_FILES = 2_000


def progress(message: str) -> None:
    print(f"# bench_catalogue: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The tree of small files


def write_tree(root: Path, count: int, seed: int) -> list[Path]:
    """``count`` files of SMALL_FILE random bytes, FILES_PER_DIRECTORY to a directory."""
    rng = random.Random(seed)
    files = []
    for number in range(count):
        directory = root / f"d{number // FILES_PER_DIRECTORY:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{number:05d}.bin"
        path.write_bytes(rng.randbytes(SMALL_FILE))
        files.append(path)
    return files


async def in_process_files_per_second(root: Path, files: list[Path], work: Path) -> float:
    """``back_up`` of every file in turn, each a version of its own path in one catalogue."""
    catalogue = Catalogue(work / "catalogue.sqlite3")
    try:
        placer = NoisePlacer(InProcessPlacer(work / "fragments", catalogue, K, N))
        started = time.perf_counter()
        for path in files:
            seen = path.stat()
            await back_up(file_pieces(path), placer, catalogue, str(path.relative_to(root)),
                          seen.st_size, seen.st_mode & 0o7777, seen.st_mtime_ns)  # fmt: skip
        return len(files) / (time.perf_counter() - started)
    finally:
        catalogue.close()


def cli_upload(customer: GuideHost, local: Path, remote: str, timeout: float) -> tuple[float, list]:
    """``bitdust --json file upload LOCAL REMOTE``: wall seconds and the ``done`` events."""
    command = [*bitdust_command(), "--json", "file", "upload", str(local), remote]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        result = subprocess.run(command, env=customer.env, stdout=out, stderr=subprocess.PIPE,
                                text=True, timeout=timeout)  # fmt: skip
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"bitdust file upload exited {result.returncode}: {result.stderr}")
        out.seek(0)
        events = [json.loads(line) for line in out if line.strip()]
    return elapsed, [event for event in events if event.get("event") == "done"]


# ---------------------------------------------------------------------------------------------
# A large catalogue


def catalogue_path(customer: GuideHost) -> Path:
    return customer.base / "state" / customer.instance / CATALOGUE_FILE


def grow_catalogue(customer: GuideHost, total: int) -> float:
    """With the customer stopped, add versions of the seed's content under new paths until the
    catalogue lists ``total`` files; seconds it took."""
    catalogue = Catalogue(catalogue_path(customer))
    try:
        have = len(catalogue.list_files())
        seed = catalogue.version(SEED_REMOTE)
        started = time.perf_counter()
        snapshot = catalogue.begin_snapshot()
        for number in range(have, total):
            path = f"catalogue/f{number:06d}.bin"
            catalogue.add_version(snapshot, path, seed.size, seed.mtime_ns, seed.mode,
                                  seed.sha256, seed.chunk_ids)  # fmt: skip
        catalogue.end_snapshot(snapshot, True)
        return time.perf_counter() - started
    finally:
        catalogue.close()


def offsite_current(customer: GuideHost) -> bool:
    consumed = customer.api("GET", "/space/consumed/v1")[1]["result"]
    return consumed["offsite_generation"] == consumed["catalogue_generation"]


def restart_customer(customer: GuideHost, timeout: float) -> float:
    """Start the stopped customer and wait until its catalogue's off-site copy is current (the
    start pushes a copy: measuring meanwhile would time that work); seconds until then."""
    started = time.perf_counter()
    customer.bitdust("daemon")
    wait_for(lambda: offsite_current(customer), timeout, "the catalogue is stored off-site")
    return time.perf_counter() - started


def timed_list(customer: GuideHost, expected: int, timeout: float) -> float:
    started = time.perf_counter()
    result = cli(customer.env, "--json", "file", "list", check=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    listed = len(json.loads(result.stdout))
    if listed != expected:
        raise RuntimeError(f"file list showed {listed} files, the catalogue holds {expected}")
    return elapsed


def timed_restore(customer: GuideHost, remote: str, target: Path, expected: bytes) -> float:
    started = time.perf_counter()
    cli(customer.env, "file", "download", remote, str(target), check=True, timeout=120)
    elapsed = time.perf_counter() - started
    if hashlib.sha256(target.read_bytes()).digest() != expected:
        raise RuntimeError(f"the restored {remote} differs from what was backed up")
    target.unlink()
    return elapsed


# ---------------------------------------------------------------------------------------------


def run(smoke: bool) -> list[dict[str, Any]]:
    small_files = 200 if smoke else 10_000
    catalogued = (100, 1_000) if smoke else (1_000, 100_000)
    timeout = 120 if smoke else 600
    with tempfile.TemporaryDirectory(prefix="bitdust-bench-catalogue-") as temp:
        root = Path(temp)
        tree = root / "tree"
        files = write_tree(tree, small_files, seed=15)
        measured = files[:BASELINE_FILES]
        progress(f"{len(measured)} files of {SMALL_FILE} bytes through back_up in this process")
        with tempfile.TemporaryDirectory(dir=root) as work:
            baseline = asyncio.run(in_process_files_per_second(tree, measured, Path(work)))
        progress(f"in process: {baseline:.0f} files/s")

        hosts = {name: GuideHost(root, name) for name in HOSTS}
        customer = GuideHost(root, CUSTOMER_HOST)
        points: list[dict[str, Any]] = []
        try:
            progress("starting four suppliers and a customer")
            network_started = time.perf_counter()
            start_suppliers(hosts, dict(zip(HOSTS, SUPPLIER_NAMES, strict=True)))
            start_customer(customer, N, **{"services/customer/data-fragments": K})
            progress(f"network up in {time.perf_counter() - network_started:.1f} s")
            seed = write_tree(root / "seed", 1, seed=0)[0]
            cli_upload(customer, seed, SEED_REMOTE, timeout)
            seed_sha256 = hashlib.sha256(seed.read_bytes()).digest()
            total = 1

            def measure_at(count: int) -> None:
                cli(customer.env, "stop", check=True)
                grown = grow_catalogue(customer, count)
                started = restart_customer(customer, timeout)
                # a first download opens the p2p sessions: the timed one finds them open
                timed_restore(customer, SEED_REMOTE, root / "warm.bin", seed_sha256)
                listing = timed_list(customer, count, timeout)
                middle = f"catalogue/f{count // 2:06d}.bin"
                restore = timed_restore(customer, middle, root / "restored.bin", seed_sha256)
                progress(f"{count} files: catalogue grown in {grown:.1f} s, customer started and "
                         f"off-site copy current in {started:.1f} s, file list {listing:.2f} s, "
                         f"restore of one file {restore:.2f} s")  # fmt: skip
                size = catalogue_path(customer).stat().st_size
                note = (f"bitdust --json file list (whole listing, asked for {LIST_PAGE:,} "
                        f"files at a time, CLI start included), "
                        f"catalogue {size / 1e6:.1f} MB; customer restarted after the catalogue "
                        f"grew, measured once its off-site copy was current")  # fmt: skip
                points.append(
                    {
                        "curve": "file list by catalogued files",
                        "x": count,
                        "x_unit": "files",
                        "figure": listing,
                        "unit": "s",
                        "note": note,
                    }
                )
                points.append({"curve": "single-file restore by catalogued files", "x": count,
                               "x_unit": "files", "figure": restore, "unit": "s",
                               "note": "bitdust file download of one 4 KiB file (CLI start "
                                       "included), p2p sessions already open"})  # fmt: skip

            measure_at(catalogued[0])
            total = catalogued[0]
            progress(f"{small_files} files with bitdust file upload DIR")
            wall, done = cli_upload(customer, tree, "tree", timeout)
            expected = [f"tree/{path.relative_to(tree)}" for path in files]
            if [event["remote"] for event in done] != expected:
                raise RuntimeError("the upload did not report every file once, in order")
            if any(event["new_chunks"] != 1 for event in done):
                raise RuntimeError("a file of random bytes was not uploaded as a new chunk")
            node_seconds = sum(event["seconds"] for event in done)
            total += small_files
            progress(f"CLI: {small_files / wall:.1f} files/s ({wall:.1f} s; the node's back_up, "
                     f"summed over the files sent at once: {node_seconds:.1f} s)")  # fmt: skip
            measure_at(max(catalogued[1], total))
        finally:
            for host in (customer, *hosts.values()):
                cli(host.env, "stop")
    row = {
        "name": "storage.small_files_backup_rate",
        "figure": small_files / wall,
        "unit": "files/s",
        "limit": 0.3 * baseline,
        "target": "above",
        "baseline_files_s": baseline,
        "node_backup_seconds": round(node_seconds, 2),
        "wall_seconds": round(wall, 2),
        "note": f"{small_files} random files of {SMALL_FILE} B in {FILES_PER_DIRECTORY}-file "
        f"directories, k = {K} of N = {N} on this host, bitdust file upload DIR (one command); "
        f"limit = 0.3 x back_up of the first {min(BASELINE_FILES, small_files)} of the same "
        "files one by one in this process (real codec, fragments to disk, Noise-encrypted); "
        f"the CLI sends small files {UPLOADS_IN_FLIGHT} at a time; node_backup_seconds sums the "
        f"node's back_up time per file; the catalogue held {catalogued[0]} files; five nodes, "
        "the CLI and this process share 2 cores",
    }
    return [row, *points]


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
