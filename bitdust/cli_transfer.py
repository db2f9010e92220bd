"""`bitdust file upload` and `file download`: the CLI reads and writes the user's files itself and
streams their content over the API, because a hardened daemon cannot reach users' homes.

Nothing here holds a whole file in memory, and a download never leaves a partial file at its
destination: the bytes go to a 0600 temporary file beside it that is checked (size, SHA-256),
fsynced, given its mode and mtime, then renamed over the destination, or removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from bitdust.api.client import ApiClient, ClientError, LocalFileError, NotRunning
from bitdust.cli import CliError, UsageError, size_text
from bitdust.files import fsync_dir

TEMP_SUFFIX = ".part"
LIST_PAGE = 1000  # files per request of a listing: each answer is quick to make and to read
BAR_INTERVAL = 0.1  # a terminal's bar is redrawn at most 10 times a second
JSON_INTERVAL = 0.5  # progress lines for scripts: at most 2 a second


class FileChanged(Exception):
    """The file changed while it was read: what was sent is no consistent version of it."""


def _rate_text(size: int, seconds: float) -> str:
    return f"{size_text(size / seconds) if seconds > 0 else '-'}/s"


def listed(client: ApiClient, remote: str | None) -> Iterator[dict[str, Any]]:
    """Every file at or under ``remote`` (all when None) in path order, asked for a page at a
    time: the first lines show at once, and no one request holds the node up for long."""
    after = ""
    while True:
        page = client.call("GET", "file/list", path=remote, after=after, limit=LIST_PAGE)
        yield from page
        if len(page) != LIST_PAGE:  # the last page (or a node that sent every file at once)
            return
        after = page[-1]["remote"]


# ---------------------------------------------------------------------------------------------
# Progress


@dataclass
class _Progress:
    name: str
    total: int
    started: float
    done: int = 0
    shown_at: float = float("-inf")


@dataclass
class Reporter:
    """Shows transfers the way the caller can read them: a one-line bar when stderr is a
    terminal, JSON lines on stdout with ``--json``, else one summary line per file."""

    json_lines: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    _current: _Progress | None = None

    @property
    def bar(self) -> bool:
        return self.err.isatty()

    def start(self, name: str, total: int) -> Callable[[int], None]:
        """Begin a file; returns the callback the transfer calls with the bytes done."""
        self._current = _Progress(name, total, self.clock())
        return self._update

    def elapsed(self) -> float:
        return self.clock() - self._current.started if self._current else 0.0

    def _update(self, done: int) -> None:
        progress = self._current
        assert progress is not None
        progress.done = done
        now = self.clock()
        interval = BAR_INTERVAL if self.bar else JSON_INTERVAL
        if now - progress.shown_at < interval and done < progress.total:
            return
        progress.shown_at = now
        seconds = now - progress.started
        rate = done / seconds if seconds > 0 else 0.0
        if self.bar:
            self._draw(progress, rate)
        elif self.json_lines:
            self._json(event="progress", file=progress.name, done=done, total=progress.total,
                       rate=round(rate))  # fmt: skip

    def _draw(self, progress: _Progress, rate: float) -> None:
        percent = 100 * progress.done / progress.total if progress.total else 100.0
        left = f"{(progress.total - progress.done) / rate:.0f} s left" if rate > 0 else ""
        width = 20
        filled = int(width * percent / 100)
        line = (
            f"{progress.name[-40:]} [{'#' * filled}{'.' * (width - filled)}] "
            f"{size_text(progress.done)}/{size_text(progress.total)} {percent:3.0f}% "
            f"{size_text(rate)}/s {left}"
        )
        self.err.write(f"\r\x1b[K{line}")
        self.err.flush()

    def _clear(self) -> None:
        if self.bar and self._current is not None:
            self.err.write("\r\x1b[K")
            self.err.flush()

    def _json(self, **event: Any) -> None:
        print(json.dumps(event), file=self.out, flush=True)

    def done(self, summary: str, event: dict[str, Any]) -> None:
        """A file transferred: the summary line, or its ``done`` event with ``--json``."""
        self._clear()
        self._current = None
        if self.json_lines:
            self._json(event="done", **event)
        else:
            print(summary, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        """A file that could not be transferred: one line on stderr; the command exits 1."""
        self.failures += 1
        self.note(message)

    def note(self, message: str) -> None:
        self._clear()
        self._current = None
        print(f"bitdust: {message}", file=self.err, flush=True)


# ---------------------------------------------------------------------------------------------
# Upload


@dataclass(frozen=True)
class _Upload:
    local: Path
    remote: str
    named: bool = False  # LOCAL itself: a symbolic link the user named is followed


def upload(
    client: ApiClient, local: str, remote: str | None, reporter: Reporter, reread: bool = False
) -> int:
    """Upload a file, or a directory's regular files, to REMOTE (default: LOCAL's name). A file
    whose size, mode and mtime match its newest version in the catalogue is not read; with
    ``reread`` it is, and is sent only when its SHA-256 differs from that version's."""
    source = Path(local)
    try:
        top = source.stat()
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}") from None
    remote = (remote or source.absolute().name).rstrip("/")
    if not remote:
        raise UsageError(f"cannot name {source} in the catalogue: give REMOTE")
    if stat.S_ISDIR(top.st_mode):
        uploads = list(_walk(source, remote, reporter))
    elif stat.S_ISREG(top.st_mode):
        uploads = [_Upload(source, remote, named=True)]
    else:
        raise CliError(f"{source} is neither a regular file nor a directory")
    uploads = _skip_unchanged(client, uploads, reporter, reread)
    _upload_all(client, uploads, reporter)
    return 1 if reporter.failures else 0


#: Files up to this size go UPLOADS_IN_FLIGHT at once, without a bar of their own: a small file
#: costs the node a round trip to every supplier (each writes and fsyncs a fragment) far more than
#: its bytes, and one at a time left the node and the suppliers waiting on each other (10,000
#: files of 4 KB: 92 files/s one at a time, 124 with 4 in flight; tests/bench/bench_catalogue.py).
#: On the guide's network, whose four suppliers share one disk, 2,000 such files went at 82 files/s
#: with 4 in flight, 97-109 with 8 and 113 with 16 (each file then waits 115 ms): the suppliers'
#: fsyncs queue on the one journal. Over a real network a round trip is longer still.
SMALL_UPLOAD = 1024 * 1024
UPLOADS_IN_FLIGHT = 8


def _upload_all(client: ApiClient, uploads: list[_Upload], reporter: Reporter) -> None:
    """Upload in order and report in order: a large file alone with its progress bar, small
    ones several at once (at most UPLOADS_IN_FLIGHT sent and not yet reported)."""
    with ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="upload") as pool:
        pending: deque[tuple[_Upload, Future[_Outcome]]] = deque()

        def report_oldest() -> None:
            item, outcome = pending.popleft()
            _report(reporter, item, outcome.result())

        for item in uploads:
            if _is_small(item):
                while len(pending) >= UPLOADS_IN_FLIGHT:
                    report_oldest()
                pending.append((item, pool.submit(_send, client, item, _no_progress)))
                continue
            while pending:
                report_oldest()
            bar = functools.partial(reporter.start, str(item.local))
            _report(reporter, item, _send(client, item, bar))
        while pending:
            report_oldest()


def _is_small(item: _Upload) -> bool:
    """A regular file of at most SMALL_UPLOAD bytes; anything else (or a file that cannot be
    looked at) is sent alone, and _send says what is wrong with it."""
    try:
        seen = item.local.stat() if item.named else item.local.lstat()
    except OSError:
        return False
    return stat.S_ISREG(seen.st_mode) and seen.st_size <= SMALL_UPLOAD


def _no_progress(size: int) -> Callable[[int], None]:
    return lambda done: None


#: Files asked about in one ``file/unchanged`` call (the node's limit).
UNCHANGED_BATCH = 1000


def _skip_unchanged(
    client: ApiClient, uploads: list[_Upload], reporter: Reporter, reread: bool
) -> list[_Upload]:
    """The uploads whose file differs from its newest version in the catalogue by size, mode
    or mtime (or, when ``reread``, by its SHA-256: rsync's --checksum); the others are reported
    done, unread (or read, not sent). A file that cannot be looked at is left to the upload,
    which reports why."""
    remaining = []
    for start in range(0, len(uploads), UNCHANGED_BATCH):
        asked: list[tuple[_Upload, os.stat_result]] = []
        for item in uploads[start : start + UNCHANGED_BATCH]:
            try:
                seen = item.local.stat() if item.named else item.local.lstat()
            except OSError:
                seen = None
            if seen is not None and stat.S_ISREG(seen.st_mode):
                asked.append((item, seen))
            else:
                remaining.append(item)
        files = [
            {"remote": item.remote, "size": seen.st_size, "mode": stat.S_IMODE(seen.st_mode),
             "mtime_ns": seen.st_mtime_ns}
            for item, seen in asked
        ]  # fmt: skip
        found = client.call("POST", "file/unchanged", {"files": files}) if files else []
        for (item, _), result in zip(asked, found, strict=True):
            if result is None or (reread and not _holds(item, result.get("sha256"), reporter)):
                remaining.append(item)
            else:
                how = "the same SHA-256" if reread else "not read"
                summary = f"unchanged {item.local} -> {result['remote']}: {how}, nothing sent"
                reporter.done(summary, {"file": str(item.local), **result, "unchanged": True})
    order = {id(item): position for position, item in enumerate(uploads)}
    return sorted(remaining, key=lambda item: order[id(item)])


#: What one read takes of a file being checked.
CHECK_READ = 1024 * 1024


def _holds(item: _Upload, sha256: str | None, reporter: Reporter) -> bool:
    """Whether ``item``'s file holds the bytes whose SHA-256 is ``sha256`` (hex), with a
    progress bar for a large one; one that cannot be read does not (its upload says why)."""
    if sha256 is None:
        return False
    try:
        with open(_open_source(item), "rb") as source:
            seen = os.fstat(source.fileno())
            if not stat.S_ISREG(seen.st_mode):
                return False
            on_progress = (
                reporter.start(str(item.local), seen.st_size)
                if seen.st_size > SMALL_UPLOAD
                else _no_progress(seen.st_size)
            )
            if seen.st_size <= CHECK_READ:
                return hashlib.sha256(source.read()).hexdigest() == sha256
            return _sha256(source, on_progress) == sha256
    except OSError:
        return False


def _sha256(source: BinaryIO, on_progress: Callable[[int], None]) -> str:
    """``source``'s SHA-256 (hex), each read made in a worker thread while the one before is
    hashed: both let go of the GIL (256 MiB in 0.16 s instead of 0.20)."""
    digest, done = hashlib.sha256(), 0
    current, following = bytearray(CHECK_READ), bytearray(CHECK_READ)
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reader:
        reading = reader.submit(source.readinto, current)
        while read := reading.result():
            reading = reader.submit(source.readinto, following)
            digest.update(memoryview(current)[:read])
            done += read
            on_progress(done)
            current, following = following, current
    return digest.hexdigest()


def _open_source(item: _Upload) -> int:
    """A descriptor of ``item``'s file to read; a symbolic link is followed only when the user
    named it. O_NONBLOCK: a file replaced by a FIFO since the walk must not hang the open."""
    no_follow = 0 if item.named else os.O_NOFOLLOW
    return os.open(item.local, os.O_RDONLY | no_follow | os.O_NONBLOCK)


def _walk(directory: Path, remote: str, reporter: Reporter) -> Iterator[_Upload]:
    """The regular files below ``directory`` in name order; symbolic links and special files
    are reported and skipped, never followed."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        reporter.fail(f"cannot read {directory}: {exc.strerror}")
        return
    for entry in entries:
        path = directory / entry.name
        if entry.is_symlink():
            reporter.note(f"skipped {path}: a symbolic link")
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(path, f"{remote}/{entry.name}", reporter)
        elif entry.is_file(follow_symlinks=False):
            yield _Upload(path, f"{remote}/{entry.name}")
        else:
            reporter.note(f"skipped {path}: not a regular file")


@dataclass(frozen=True)
class _Outcome:
    """What sending one file came to: the node's result, a failure (the command exits 1) or a
    reason it was no upload at all (said, not a failure)."""

    result: dict[str, Any] | None = None
    seconds: float = 0.0
    failure: str | None = None
    skipped: str | None = None


def _send(
    client: ApiClient, item: _Upload, start: Callable[[int], Callable[[int], None]]
) -> _Outcome:
    """Upload one file; ``start(size)`` returns its progress callback. Touches no shared
    state (it runs in a worker thread for small files); NotRunning stops the whole command."""
    started = time.monotonic()
    try:
        fd = _open_source(item)
    except OSError as exc:
        return _Outcome(failure=f"cannot read {item.local}: {exc.strerror}")
    with open(fd, "rb") as source:
        seen = os.fstat(fd)
        if not stat.S_ISREG(seen.st_mode):
            return _Outcome(skipped=f"skipped {item.local}: not a regular file")

        def unchanged() -> None:
            now = os.fstat(fd)
            if (now.st_size, now.st_mtime_ns) != (seen.st_size, seen.st_mtime_ns):
                raise FileChanged

        query = {
            "remote": item.remote,
            "size": seen.st_size,
            "mode": stat.S_IMODE(seen.st_mode),
            "mtime_ns": seen.st_mtime_ns,
        }
        on_progress = start(seen.st_size)
        try:
            result = client.upload(
                "file/upload/start", query, source, seen.st_size, on_progress, unchanged
            )
        except FileChanged:
            return _Outcome(failure=_changed(item.local))
        except LocalFileError as exc:
            try:
                unchanged()
            except FileChanged:
                return _Outcome(failure=_changed(item.local))
            return _Outcome(failure=f"cannot read {item.local}: {exc}")
        except NotRunning:
            raise
        except ClientError as exc:
            return _Outcome(failure=f"{item.local} not uploaded: {exc}")
    return _Outcome(result=result, seconds=time.monotonic() - started)


def _report(reporter: Reporter, item: _Upload, outcome: _Outcome) -> None:
    if outcome.failure is not None:
        reporter.fail(outcome.failure)
    elif outcome.skipped is not None:
        reporter.note(outcome.skipped)
    else:
        result, seconds = outcome.result, outcome.seconds
        assert result is not None
        summary = (
            f"uploaded {item.local} -> {result['remote']}: {size_text(result['size'])}, "
            f"{result['chunks']} chunks ({result['new_chunks']} new) in {seconds:.1f} s, "
            f"{_rate_text(result['size'], seconds)}"
        )
        reporter.done(summary, {"file": str(item.local), **result})


def _changed(local: Path) -> str:
    return f"{local} changed while it was read; not backed up (run the upload again)"


# ---------------------------------------------------------------------------------------------
# Download


@dataclass(frozen=True)
class _Download:
    remote: str
    local: Path
    size: int  # as the catalogue lists it: the progress bar's total


def download(
    client: ApiClient, remote: str, local: str | None, version: int | None, reporter: Reporter
) -> int:
    """Restore the file REMOTE, or every file below the directory REMOTE, to LOCAL."""
    remote = remote.rstrip("/")
    entries = list(listed(client, remote))
    name = _base_name(remote)
    exact = [entry for entry in entries if entry["remote"] == remote]
    if exact:
        destination = Path(local) if local else Path(name)
        if destination.is_dir():
            destination = destination / name
        downloads = [_Download(remote, destination, exact[0]["size"])]
    else:
        if version is not None:
            raise UsageError("--version picks a version of one file, not of a directory")
        root = Path(local) if local else Path(name)
        downloads = []
        for entry in entries:
            relative = entry["remote"].removeprefix(f"{remote}/")
            if relative == entry["remote"]:
                continue  # a neighbour with the same prefix, e.g. docs2/ of docs
            parts = relative.split("/")
            if any(part in ("", ".", "..") for part in parts):
                reporter.fail(f"refused {entry['remote']!r}: not a plain path below {remote}")
                continue
            downloads.append(_Download(entry["remote"], root.joinpath(*parts), entry["size"]))
        if not downloads and not reporter.failures:
            raise CliError(f"no file or directory {remote} in the catalogue")
    for item in downloads:
        _download_file(client, item, version, reporter)
    return 1 if reporter.failures else 0


def _base_name(remote: str) -> str:
    """The last part of ``docs/a.txt`` or of BitDust's ``master$alice@host:docs``."""
    return remote.rsplit("/", 1)[-1].rsplit(":", 1)[-1] or "download"


class _BadDownload(Exception):
    """What the node sent does not match what it announced."""


class _HashingSink:
    """The temporary file, hashing and counting what is written to it. Each piece is hashed in
    one worker thread and written in another while the next one is received (hashlib and file
    writes let go of the GIL), so neither the check nor the disk holds up the reader; at most
    ``QUEUED_PIECES`` pieces wait for them."""

    QUEUED_PIECES = 8

    def __init__(self, handle: BinaryIO, hasher: ThreadPoolExecutor, writer: ThreadPoolExecutor):
        self.handle = handle
        self.size = 0
        self._digest = hashlib.sha256()
        self._hasher = hasher
        self._writer = writer
        self._queued: deque[tuple[Future[None], Future[int]]] = deque()

    def write(self, data: bytes) -> int:
        while len(self._queued) >= self.QUEUED_PIECES:
            self._finish_oldest()
        hashing = self._hasher.submit(self._digest.update, data)
        self._queued.append((hashing, self._writer.submit(self.handle.write, data)))
        self.size += len(data)
        return len(data)

    def finish(self) -> str:
        """The SHA-256 of all that was written, once written (a write's OSError is raised)."""
        while self._queued:
            self._finish_oldest()
        return self._digest.hexdigest()

    def _finish_oldest(self) -> None:
        hashing, writing = self._queued.popleft()
        hashing.result()
        writing.result()


def _download_file(
    client: ApiClient, item: _Download, version: int | None, reporter: Reporter
) -> None:
    on_progress = reporter.start(str(item.local), item.size)
    try:
        headers = _receive(client, item, {"remote": item.remote, "version": version}, on_progress)
    except NotRunning:
        raise
    except LocalFileError as exc:
        reporter.fail(f"cannot write {item.local}: {exc}")
        return
    except OSError as exc:
        reporter.fail(f"cannot write {item.local}: {exc.strerror or exc}")
        return
    except (ClientError, _BadDownload) as exc:
        reporter.fail(f"{item.remote} not downloaded: {exc}")
        return
    seconds = reporter.elapsed()
    size = int(headers["x-bitdust-size"])
    version_text = headers["x-bitdust-version"]
    summary = (
        f"downloaded {item.remote} -> {item.local}: {size_text(size)} (version {version_text}) "
        f"in {seconds:.1f} s, {_rate_text(size, seconds)}"
    )
    event = {
        "file": str(item.local),
        "remote": item.remote,
        "size": size,
        "version": int(version_text),
        "sha256": headers["x-bitdust-sha256"],
        "seconds": round(seconds, 3),
    }
    reporter.done(summary, event)


def _receive(
    client: ApiClient, item: _Download, query: dict[str, Any], on_progress: Callable[[int], None]
) -> dict[str, str]:
    """Download into a 0600 temporary file beside the destination and rename it there once
    checked, with its mode and mtime; on any failure the temporary file is removed."""
    directory = item.local.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{item.local.name}.", suffix=TEMP_SUFFIX, dir=directory
    )
    try:
        with (
            open(fd, "wb") as handle,
            ThreadPoolExecutor(1) as hasher,
            ThreadPoolExecutor(1) as writer,
        ):
            sink = _HashingSink(handle, hasher, writer)
            headers = client.download("file/download/start", query, sink, on_progress)
            mode, mtime_ns = _check(headers, sink.size, sink.finish())
            handle.flush()
            os.fsync(fd)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(time.time_ns(), mtime_ns))
        os.replace(temp_name, item.local)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(directory)
    return headers


def _check(headers: dict[str, str], size_written: int, sha256_written: str) -> tuple[int, int]:
    """(mode, mtime_ns) from the headers, once the bytes match their size and SHA-256."""
    try:
        size = int(headers["x-bitdust-size"])
        mode = int(headers["x-bitdust-mode"])
        mtime_ns = int(headers["x-bitdust-mtime-ns"])
        sha256 = headers["x-bitdust-sha256"]
        int(headers["x-bitdust-version"])
    except (KeyError, ValueError) as exc:
        raise _BadDownload(f"the node sent no valid x-bitdust headers ({exc})") from None
    if not 0 <= mode <= 0o7777:
        raise _BadDownload(f"the node sent mode {mode}, not a file mode")
    if size_written != size:
        raise _BadDownload(f"received {size_written} bytes, the file has {size}")
    if sha256_written != sha256.lower():
        raise _BadDownload("the content does not match its SHA-256")
    return mode, mtime_ns
