"""The process around the node, in-process with fake services: whatever ends a start or a restart
leaves no API secret or socket behind, tells systemd why, and picks an exit status that says
whether restarting can help (the unit's RestartPreventExitStatus= lists the ones that cannot)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bitdust.config import ConfigError, Paths
from bitdust.daemon import Daemon, Notifier
from bitdust.errors import ExitStatus
from bitdust.node.service import ServiceError
from tests.helpers import NotifyListener
from tests.node import fakes
from tests.node.fakes import JOURNAL, base_config, enable, spec
from tests.ports import free_port

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "bitdust@.service"


@pytest.fixture(autouse=True)
def clean_journal() -> Iterator[None]:
    JOURNAL.clear()
    fakes.StartsOnce.started = fakes.SlowAgain.started = 0
    yield
    JOURNAL.clear()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield listener
    listener.close()


def daemon_with(tmp_path: Path, catalog: tuple, *enabled: str) -> Daemon:
    flags = {"interface/api/rest-http-port": str(free_port())}
    config = enable(base_config(tmp_path, **flags), *enabled)
    paths: Paths = config.paths
    paths.make_dirs()
    return Daemon(paths, config, flags, catalog)


def restart_prevented() -> set[int]:
    """The exit statuses after which systemd does not restart the unit."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("RestartPreventExitStatus="):
            return {int(code) for code in line.partition("=")[2].split()}
    return set()


async def ready(daemon: Daemon, notify: NotifyListener) -> asyncio.Task[ExitStatus]:
    """The daemon's main() running, once it has sent READY=1."""
    main = asyncio.create_task(daemon.main())
    while "READY=1" not in notify.fields():
        assert not main.done(), main.result()
        await asyncio.sleep(0.05)
    return main


def assert_cleaned_up(daemon: Daemon) -> None:
    assert not daemon.paths.api_secret.exists()
    assert not daemon.paths.api_socket.exists()
    assert daemon.node.running() == []


async def test_a_service_raising_a_plain_error_ends_the_process_restartable(
    tmp_path: Path, notify: NotifyListener
) -> None:
    catalog = (spec("base", fakes.Base), spec("failing", fakes.Crashes, "base"))
    daemon = daemon_with(tmp_path, catalog, "base", "failing")
    assert await asyncio.wait_for(daemon.main(), 10) == ExitStatus.FAILURE
    assert ExitStatus.FAILURE not in restart_prevented()
    assert_cleaned_up(daemon)
    assert JOURNAL == ["start Base", "stop Base"]
    fields = notify.fields()
    assert "READY=1" not in fields
    failed = (
        "STATUS=failed: service failing failed to start: unexpected RuntimeError: a bug in start"
    )
    assert fields.index(failed) < fields.index("STOPPING=1")


async def test_a_kept_file_of_a_newer_format_ends_the_process_for_good(
    tmp_path: Path, notify: NotifyListener
) -> None:
    daemon = daemon_with(tmp_path, (spec("store", fakes.NewerFormat),), "store")
    assert await asyncio.wait_for(daemon.main(), 10) == ExitStatus.DATA_FORMAT
    assert ExitStatus.DATA_FORMAT in restart_prevented()
    assert ExitStatus.CONFIG in restart_prevented()
    assert_cleaned_up(daemon)
    assert "STOPPING=1" in notify.fields()


async def test_a_failing_restart_ends_the_process_instead_of_idling(
    tmp_path: Path, notify: NotifyListener
) -> None:
    # A real service name: the restart re-reads the config from disk, where dht-seed enables it.
    daemon = daemon_with(tmp_path, (spec("entangled-dht", fakes.StartsOnce),))
    main = await ready(daemon, notify)
    url = f"http://127.0.0.1:{daemon.api_port}/v1/process/restart"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, headers={"api_secret": daemon.secret or ""}) as response,
    ):
        answer = await response.json()
    assert response.status == 409
    assert answer["errors"] == [
        "restart failed, the node is stopping: service entangled-dht failed to start: "
        "cannot bind UDP 0.0.0.0:14441: address already in use"
    ]
    assert await asyncio.wait_for(main, 10) == ExitStatus.FAILURE
    assert_cleaned_up(daemon)
    assert JOURNAL == ["start StartsOnce", "stop StartsOnce"]
    fields = notify.fields()
    assert fields[-1] == "STOPPING=1"
    assert fields[-2].startswith("STATUS=failed: service entangled-dht failed to start")


async def test_a_restart_with_a_broken_config_keeps_the_services_running(
    tmp_path: Path, notify: NotifyListener
) -> None:
    daemon = daemon_with(tmp_path, (spec("entangled-dht", fakes.Base),))
    main = await ready(daemon, notify)
    daemon.paths.conffile.parent.mkdir(parents=True)
    daemon.paths.conffile.write_text("services/entangled-dht/udp-port = banana\n")
    with pytest.raises(ConfigError, match="restart refused, the services keep running"):
        await daemon.restart_services()
    assert [type(service) for service in daemon.node.running()] == [fakes.Base]
    daemon.request_stop()
    assert await asyncio.wait_for(main, 10) == ExitStatus.OK
    assert_cleaned_up(daemon)


async def test_a_stop_while_a_service_hangs_on_start_ends_the_process_at_once(
    tmp_path: Path, notify: NotifyListener
) -> None:
    """SIGTERM (request_stop sets the same event) does not wait for the 30 s start timeout."""
    catalog = (spec("base", fakes.Base), spec("slow", fakes.Hangs, "base"))
    daemon = daemon_with(tmp_path, catalog, "base", "slow")
    main = asyncio.create_task(daemon.main())
    while "start Base" not in JOURNAL:
        await asyncio.sleep(0.01)
    daemon.request_stop()
    assert await asyncio.wait_for(main, 2) == ExitStatus.OK
    assert JOURNAL == ["start Base", "cancelled Hangs", "stop Base"]
    assert_cleaned_up(daemon)
    fields = notify.fields()
    assert "READY=1" not in fields and fields[-1] == "STOPPING=1"


async def test_a_restart_while_one_runs_is_refused(tmp_path: Path, notify: NotifyListener) -> None:
    daemon = daemon_with(tmp_path, (spec("entangled-dht", fakes.SlowAgain),))
    main = await ready(daemon, notify)
    first = asyncio.create_task(daemon.restart_services())
    await asyncio.sleep(0.1)
    with pytest.raises(ServiceError, match="starting or restarting; try again when ready"):
        await daemon.restart_services()
    await first
    assert JOURNAL == ["start SlowAgain", "stop SlowAgain", "start SlowAgain"]
    assert [type(service) for service in daemon.node.running()] == [fakes.SlowAgain]
    daemon.request_stop()
    assert await asyncio.wait_for(main, 10) == ExitStatus.OK


def test_a_notify_socket_nobody_reads_never_blocks_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A datagram queue holds a few messages (net.unix.max_dgram_qlen): past them a blocking
    send would freeze the event loop, so status lines are dropped instead."""
    directory = tempfile.mkdtemp(prefix="bd-notify-")
    path = os.path.join(directory, "notify.sock")
    unread = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unread.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notify = Notifier()
        sender = threading.Thread(
            target=lambda: [notify(f"STATUS=line {n}") for n in range(500)], daemon=True
        )
        sender.start()
        sender.join(timeout=20)  # a hang detector: 500 sends take milliseconds
        assert not sender.is_alive(), "the notifier blocked on a full queue"
    finally:
        unread.close()
        shutil.rmtree(directory, ignore_errors=True)
