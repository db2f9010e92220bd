"""`bitdust file upload|download`: the CLI reads and writes the user's files itself and streams
them over the API (the daemon cannot reach users' homes).

The node here is a TEST DOUBLE: a real aiohttp server (the API's own shell, ``build_app``, with its
secret) whose file routes keep files in memory, so that faults a real node does not show on demand
(a download cut short, a wrong digest, a slow upload) can be made. It stands for the *remote node*
only; the real routes are tested with real nodes in tests/storage. It checks what a user would
see: trees uploaded with their modes and mtimes, byte-identical restores, no file and no temporary
file left by a bad download, a file changed while read refused, JSON progress lines, one line for
an unreadable file, a listing asked for a page at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bitdust.api.server import OCTET_TYPE, ApiError, Call, Param, build_app, route
from bitdust.cli import main
from bitdust.cli_transfer import SMALL_UPLOAD, UPLOADS_IN_FLIGHT, Reporter
from bitdust.config import Paths
from tests.helpers import cli, node_env, write_conf

SECRET = "test-secret"
MiB = 1024 * 1024


@dataclass
class Stored:
    data: bytes
    mode: int
    mtime_ns: int
    version: int


@dataclass
class FakeNode:
    """The remote node's file routes, in memory."""

    files: dict[str, Stored] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # bytes of each upload's body seen
    touch_on_first_piece: Path | None = None  # a local file the "user" edits mid-upload
    cut_short: set[str] = field(default_factory=set)  # downloads that stop halfway
    wrong_sha: set[str] = field(default_factory=set)
    upload_delay: float = 0.0  # seconds each upload takes, to see how many run at once
    uploading: int = 0
    most_at_once: int = 0
    list_pages: int = 0  # requests of file/list

    def routes(self) -> list[Any]:
        node = self

        @route(
            "POST", "file/upload/start", Param("remote", str, required=True),
            Param("size", int, required=True), Param("mode", int, required=True),
            Param("mtime_ns", int, required=True), stream_body=True,
        )  # fmt: skip
        async def upload(call: Call) -> dict[str, Any]:
            remote, body = call.args["remote"], bytearray()
            node.received[remote] = 0
            node.uploading += 1
            node.most_at_once = max(node.most_at_once, node.uploading)
            await asyncio.sleep(node.upload_delay)
            node.uploading -= 1
            async for piece in call.request.content.iter_any():
                body += piece
                node.received[remote] = len(body)
                if node.touch_on_first_piece is not None:
                    seen = node.touch_on_first_piece.stat()
                    os.utime(node.touch_on_first_piece, ns=(seen.st_atime_ns,
                                                            seen.st_mtime_ns + 10**9))  # fmt: skip
                    node.touch_on_first_piece = None
            if len(body) != call.args["size"]:
                raise ApiError(400, "short body")
            version = node.files[remote].version + 1 if remote in node.files else 1
            node.files[remote] = Stored(
                bytes(body), call.args["mode"], call.args["mtime_ns"], version
            )
            chunks = max(1, len(body) // MiB)
            return {"remote": remote, "version": version, "size": len(body), "chunks": chunks,
                    "new_chunks": chunks, "sent_bytes": len(body), "seconds": 0.01}  # fmt: skip

        @route("POST", "file/unchanged", Param("files", list, required=True))
        async def unchanged(call: Call) -> list[dict[str, Any] | None]:
            answers = []
            for item in call.args["files"]:
                stored = node.files.get(item["remote"])
                same = stored is not None and (len(stored.data), stored.mode, stored.mtime_ns) == (
                    item["size"], item["mode"], item["mtime_ns"]
                )  # fmt: skip
                answers.append(
                    {"remote": item["remote"], "version": stored.version, "size": item["size"],
                     "chunks": 1, "new_chunks": 0, "sent_bytes": 0, "seconds": 0.0,
                     "sha256": hashlib.sha256(stored.data).hexdigest()}
                    if same else None
                )  # fmt: skip
            return answers

        @route("GET", "file/list", Param("path", str), Param("after", str, default=""),
               Param("limit", int, default=0))  # fmt: skip
        async def listing(call: Call) -> list[dict[str, Any]]:
            path, after, limit = call.args["path"], call.args["after"], call.args["limit"]
            node.list_pages += 1
            return [
                {"remote": remote, "size": len(f.data), "mtime_ns": f.mtime_ns, "mode": f.mode,
                 "version": f.version, "versions": f.version, "created": 0}
                for remote, f in sorted(node.files.items())
                if (path is None or remote == path or remote.startswith(f"{path}/"))
                and remote > after
            ][: limit or None]  # fmt: skip

        @route("GET", "file/download/start", Param("remote", str, required=True),
               Param("version", int))  # fmt: skip
        async def download(call: Call) -> web.StreamResponse:
            remote = call.args["remote"]
            if remote not in node.files:
                raise ApiError(404, f"no file {remote}")
            stored = node.files[remote]
            digest = hashlib.sha256(stored.data).hexdigest()
            if remote in node.wrong_sha:
                digest = hashlib.sha256(b"something else").hexdigest()
            response = web.StreamResponse(headers={
                "x-bitdust-size": str(len(stored.data)), "x-bitdust-mode": str(stored.mode),
                "x-bitdust-mtime-ns": str(stored.mtime_ns), "x-bitdust-sha256": digest,
                "x-bitdust-version": str(stored.version),
            })  # fmt: skip
            response.content_type = OCTET_TYPE
            response.content_length = len(stored.data)
            await response.prepare(call.request)
            if remote in node.cut_short:
                await response.write(stored.data[: len(stored.data) // 2])
                raise ApiError(409, "a supplier went away")
            await response.write(stored.data)
            return response

        @route("GET", "file/info", Param("remote", str, required=True))
        async def info(call: Call) -> dict[str, Any]:
            stored = node.files[call.args["remote"]]
            return {"remote": call.args["remote"], "size": len(stored.data), "versions": 1}

        @route("DELETE", "file/delete", Param("remote", str, required=True))
        async def delete(call: Call) -> dict[str, Any]:
            del node.files[call.args["remote"]]
            return {"remote": call.args["remote"], "deleted": True}

        @route("GET", "space/donated")
        async def donated(call: Call) -> dict[str, Any]:
            raise ApiError(409, "service supplier is not running")

        @route("GET", "space/consumed")
        async def consumed(call: Call) -> dict[str, Any]:
            return {"suppliers": 4, "stored": 2_500_000, "needed": 5_000_000}

        return [upload, unchanged, listing, download, info, delete, donated, consumed]


@dataclass
class Instance:
    base: Path
    paths: Paths
    node: FakeNode
    port: int


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Instance]:
    """The fake node on the instance's api.sock and a TCP port, in a thread of its own."""
    env = node_env(tmp_path)
    for name in ("BITDUST_CONFIG_DIR", "BITDUST_STATE_DIR", "BITDUST_RUNTIME_DIR"):
        monkeypatch.setenv(name, env[name])
    paths = Paths.for_instance("default", env)
    paths.runtime_dir.mkdir(parents=True)
    paths.api_secret.write_text(SECRET)
    node = FakeNode()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(node.routes(), lambda: SECRET, set(), None))  # type: ignore[arg-type]

    async def start() -> int:
        await runner.setup()
        await web.UnixSite(runner, str(paths.api_socket)).start()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return next(a[1] for a in runner.addresses if isinstance(a, tuple))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    write_conf(tmp_path, "default", {"interface/api/rest-http-port": port})
    try:
        yield Instance(tmp_path, paths, node, port)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def make_tree(root: Path) -> dict[str, Path]:
    """Two regular files with their own modes and mtimes, a symbolic link and a FIFO."""
    (root / "sub").mkdir(parents=True)
    small, big = root / "a.txt", root / "sub" / "b.bin"
    small.write_bytes(b"hello\n")
    big.write_bytes(os.urandom(2 * MiB + 77))
    small.chmod(0o640)
    big.chmod(0o755)
    os.utime(small, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.utime(big, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    (root / "link").symlink_to("a.txt")
    os.mkfifo(root / "pipe")
    return {"tree/a.txt": small, "tree/sub/b.bin": big}


def test_a_directory_tree_uploads_with_modes_and_mtimes(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_tree(instance.base / "tree")
    assert main(["file", "upload", str(instance.base / "tree")]) == 0
    out, err = capsys.readouterr()
    assert sorted(instance.node.files) == sorted(files)
    for remote, local in files.items():
        stored, seen = instance.node.files[remote], local.stat()
        assert stored.data == local.read_bytes()
        assert (stored.mode, stored.mtime_ns) == (stat.S_IMODE(seen.st_mode), seen.st_mtime_ns)
    assert f"uploaded {files['tree/sub/b.bin']} -> tree/sub/b.bin: 2.1 MB, 2 chunks (2 new)" in out
    assert len(out.splitlines()) == 2
    assert err.splitlines() == [
        f"bitdust: skipped {instance.base / 'tree' / 'link'}: a symbolic link",
        f"bitdust: skipped {instance.base / 'tree' / 'pipe'}: not a regular file",
    ]


def test_small_files_go_several_at_once_and_are_reported_in_order(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = instance.base / "many"
    tree.mkdir()
    for n in range(12):
        (tree / f"{n:02}.txt").write_bytes(os.urandom(100 + n))
    (tree / "05-big.bin").write_bytes(os.urandom(SMALL_UPLOAD + 1))  # alone, between them
    instance.node.upload_delay = 0.05
    assert main(["--json", "file", "upload", str(tree)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = [event["remote"] for event in events if event["event"] == "done"]
    assert done == sorted(f"many/{path.name}" for path in tree.iterdir())
    assert 1 < instance.node.most_at_once <= UPLOADS_IN_FLIGHT
    for path in tree.iterdir():
        assert instance.node.files[f"many/{path.name}"].data == path.read_bytes()


def test_unchanged_files_are_not_read_again_unless_reread_is_asked(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_tree(instance.base / "tree")
    assert main(["file", "upload", str(instance.base / "tree")]) == 0
    small = files["tree/a.txt"]
    small.write_bytes(b"HELLO\n")  # same size; its mtime moves
    capsys.readouterr()
    instance.node.received.clear()
    assert main(["--json", "file", "upload", str(instance.base / "tree")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = {event["remote"]: event for event in events if event["event"] == "done"}
    assert instance.node.received == {"tree/a.txt": 6}  # the unchanged one was never sent
    assert done["tree/sub/b.bin"]["unchanged"] and done["tree/sub/b.bin"]["sent_bytes"] == 0
    assert "unchanged" not in done["tree/a.txt"]
    assert instance.node.files["tree/a.txt"].data == b"HELLO\n"

    # an edit that kept the size and the mtime: unseen unless the files are read again
    big = files["tree/sub/b.bin"]
    seen = big.stat()
    big.write_bytes(os.urandom(seen.st_size))
    os.utime(big, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    instance.node.received.clear()
    assert main(["file", "upload", str(instance.base / "tree")]) == 0
    assert instance.node.received == {}
    capsys.readouterr()
    assert main(["file", "upload", str(instance.base / "tree"), "--reread"]) == 0
    assert instance.node.received == {"tree/sub/b.bin": seen.st_size}  # only the edited one
    assert instance.node.files["tree/sub/b.bin"].data == big.read_bytes()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["unchanged", str(small)],
        ["uploaded", str(big)],
    ]
    assert "the same SHA-256, nothing sent" in lines[0]


def test_a_download_is_byte_identical_with_mode_and_mtime(
    instance: Instance, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_tree(instance.base / "tree")
    assert main(["file", "upload", str(instance.base / "tree"), "backup"]) == 0
    restore = instance.base / "restore"
    assert main(["file", "download", "backup", str(restore)]) == 0
    for remote, local in files.items():
        restored = restore / remote.removeprefix("tree/")
        assert restored.read_bytes() == local.read_bytes()
        assert stat.S_IMODE(restored.stat().st_mode) == stat.S_IMODE(local.stat().st_mode)
        assert restored.stat().st_mtime_ns == local.stat().st_mtime_ns
    assert sorted(p.name for p in restore.rglob("*")) == ["a.txt", "b.bin", "sub"]
    # one file into an existing directory, in the current directory by default
    monkeypatch.chdir(restore / "sub")
    assert main(["file", "download", "backup/a.txt"]) == 0
    assert (restore / "sub" / "a.txt").read_bytes() == b"hello\n"
    assert "downloaded backup/a.txt -> a.txt: 6 B (version 1)" in capsys.readouterr().out


@pytest.mark.parametrize("fault", ["cut_short", "wrong_sha"])
def test_a_bad_download_leaves_no_file_and_no_temporary_file(
    instance: Instance, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    instance.node.files["docs/report.pdf"] = Stored(os.urandom(3 * MiB), 0o644, 10**18, 1)
    getattr(instance.node, fault).add("docs/report.pdf")
    destination = instance.base / "out"
    destination.mkdir()
    (destination / "report.pdf").write_bytes(b"the old copy")
    assert main(["file", "download", "docs/report.pdf", str(destination)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("bitdust: docs/report.pdf not downloaded: ") and len(err.splitlines()) == 1
    )
    assert [p.name for p in destination.iterdir()] == ["report.pdf"]
    assert (destination / "report.pdf").read_bytes() == b"the old copy"


def test_nothing_in_the_catalogue_is_one_line(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["file", "download", "nowhere"]) == 1
    assert capsys.readouterr().err == "bitdust: no file or directory nowhere in the catalogue\n"


def test_a_file_changed_while_read_is_refused_and_the_others_continue(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = instance.base / "work"
    tree.mkdir()
    changing, steady = tree / "a-changing.log", tree / "b-steady.txt"
    changing.write_bytes(os.urandom(8 * MiB))
    steady.write_bytes(b"steady")
    instance.node.touch_on_first_piece = changing
    assert main(["file", "upload", str(tree)]) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"bitdust: {changing} changed while it was read; not backed up (run the upload again)\n"
    )
    assert 0 < instance.node.received["work/a-changing.log"] < 8 * MiB
    assert sorted(instance.node.files) == ["work/b-steady.txt"]
    assert out.startswith(f"uploaded {steady} -> work/b-steady.txt")


def test_json_progress_lines_parse(instance: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    local = instance.base / "data.bin"
    local.write_bytes(os.urandom(3 * MiB))
    assert main(["--json", "file", "upload", str(local), "d/data.bin"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 3 * MiB
    assert set(progress[0]) == {"event", "file", "done", "total", "rate"}
    assert events[-1]["event"] == "done" and events[-1]["remote"] == "d/data.bin"
    assert events[-1]["file"] == str(local) and events[-1]["chunks"] == 3
    assert main(["file", "download", "d/data.bin", str(instance.base / "copy"), "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["event"] == "done" and done["size"] == 3 * MiB
    assert (instance.base / "copy").read_bytes() == local.read_bytes()


def test_an_unreadable_local_file_is_one_line_naming_it(instance: Instance) -> None:
    """As root the CLI runs as the user nobody, for whom a 0000 file is unreadable."""
    user = None
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to run the CLI as a user root is not")
        user = "nobody"
        for directory in (instance.base, *instance.base.parents):
            directory.chmod(directory.stat().st_mode | 0o005)
        for path in (instance.paths.config_dir, instance.paths.runtime_dir.parent,
                     instance.paths.runtime_dir):  # fmt: skip
            path.chmod(0o755)
        instance.paths.conffile.chmod(0o644)
        instance.paths.api_secret.chmod(0o644)
        instance.paths.api_socket.chmod(0o666)
    tree = instance.base / "mixed"
    tree.mkdir(mode=0o755)
    (tree / "closed.txt").write_bytes(b"secret")
    (tree / "closed.txt").chmod(0)
    (tree / "open.txt").write_bytes(b"public")
    (tree / "open.txt").chmod(0o644)
    env = node_env(instance.base)
    result = cli(env, "file", "upload", str(tree), user=user)
    assert result.returncode == 1
    assert result.stderr == f"bitdust: cannot read {tree / 'closed.txt'}: Permission denied\n"
    assert sorted(instance.node.files) == ["mixed/open.txt"]


def test_file_list_and_storage_show_what_the_node_serves(
    instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    instance.node.files["docs/a.txt"] = Stored(b"x" * 2_500_000, 0o644, 1_600_000_000 * 10**9, 3)
    instance.node.files["other/b.txt"] = Stored(b"y", 0o644, 1_600_000_000 * 10**9, 1)
    assert main(["file", "list", "docs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["size", "modified", "versions", "remote"]
    assert len(lines) == 2 and lines[1].split()[:2] == ["2.5", "MB"]
    assert lines[1].split()[-2:] == ["3", "docs/a.txt"]
    assert instance.node.list_pages == 1
    assert main(["storage"]) == 0  # the supplier side's 409 is skipped
    assert capsys.readouterr().out.splitlines() == [
        "consumed:", "  suppliers: 4", "  stored: 2500000", "  needed: 5000000"
    ]  # fmt: skip


def test_file_list_and_a_directory_download_ask_for_the_listing_a_page_at_a_time(
    instance: Instance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("bitdust.cli_transfer.LIST_PAGE", 2)
    names = [f"docs/{n}.txt" for n in range(5)]  # 2 + 2 + 1
    for name in [*names, "other.txt"]:
        instance.node.files[name] = Stored(name.encode(), 0o644, 1_600_000_000 * 10**9, 1)
    assert main(["--json", "file", "list", "docs"]) == 0
    assert [row["remote"] for row in json.loads(capsys.readouterr().out)] == names
    assert instance.node.list_pages == 3
    instance.node.files.pop(names[-1])  # 2 + 2, then an empty page
    assert main(["file", "list", "docs"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == [
        "remote", *names[:-1]
    ]  # fmt: skip
    assert instance.node.list_pages == 6
    assert main(["file", "download", "docs", str(tmp_path / "restored")]) == 0
    restored = sorted(p.name for p in (tmp_path / "restored").iterdir())
    assert restored == [name.removeprefix("docs/") for name in names[:-1]]
    assert instance.node.list_pages == 9


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_bar_is_redrawn_at_most_ten_times_a_second() -> None:
    now = [100.0]
    err, out = Terminal(), io.StringIO()
    reporter = Reporter(json_lines=False, out=out, err=err, clock=lambda: now[0])
    on_progress = reporter.start("photos/cat.jpg", 10_000_000)
    for step in range(1, 101):  # 100 updates over 2 s
        now[0] += 0.02
        on_progress(step * 100_000)
    draws = err.getvalue().split("\r\x1b[K")[1:]
    assert 15 <= len(draws) <= 21  # about every 0.1 s (the clock's floats), and the last
    assert draws[-1].startswith("photos/cat.jpg [####################] 10.0 MB/10.0 MB 100%")
    assert "5.0 MB/s" in draws[-1] and "0 s left" in draws[-1]
    percents = [int(draw.split("%")[0].rsplit(" ", 1)[-1]) for draw in draws]
    assert percents == sorted(percents) and percents[0] == 1
    reporter.done("uploaded photos/cat.jpg", {})
    assert err.getvalue().endswith("\r\x1b[K") and out.getvalue() == "uploaded photos/cat.jpg\n"
