"""The node's process: config check, pidfile, API, services, signals and systemd notifications.

`bitdust run` ends up here. Everything that touches the process as a whole lives in this module
(signals, sd_notify, the watchdog, the pidfile lock, the API secret); the node and its services
know nothing of them. SIGTERM stops cleanly and exits 0; SIGHUP reloads. Whatever stops the node
from starting (or from restarting its services) ends the process with its reason on one line, the
API secret, socket and pidfile removed, and an :class:`~bitdust.errors.ExitStatus` that tells
systemd whether a restart can help.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bitdust import __version__
from bitdust.api import routes as api_routes
from bitdust.api.metrics import Exporter, metrics_app
from bitdust.api.server import build_app
from bitdust.config import (
    ConffileEdit,
    Config,
    ConfigError,
    Paths,
    check_in_force,
    load_config,
    plan_edit,
    plan_unset,
)
from bitdust.errors import DataFormatError, ExitStatus
from bitdust.files import atomic_write
from bitdust.log_file import LogFileRotation, RotatingStreamHandler
from bitdust.malloc import bound_allocator_memory
from bitdust.metrics import Family, node_families
from bitdust.node.catalog import CATALOG, ServiceSpec
from bitdust.node.checks import check_config, pid_of_running
from bitdust.node.node import EXPECTED_FAILURES, Node, ServiceStartFailed, failure_reason
from bitdust.node.service import ServiceError

log = logging.getLogger("bitdust")

STOP_TIMEOUT = 8.0
STATUS_INTERVAL = 2.0


class StartError(Exception):
    """The node cannot start; the message lists every reason."""


def load_checked_config(
    paths: Paths, flags: dict[str, str], edit: ConffileEdit | None = None
) -> Config:
    """The whole configuration (as ``edit`` would leave it, when given), or StartError with
    every problem found in it."""
    try:
        config = load_config(paths, flags=flags, edit=edit)
    except ConfigError as exc:
        raise StartError(str(exc)) from None
    problems = check_config(config)
    if problems:
        raise StartError("\n".join(problems))
    return config


class LogFormatter(logging.Formatter):
    """Records as lines on stderr. Under journald every line starts with its syslog priority
    (sd-daemon(3)'s ``<3>`` prefix), so `journalctl -p warning` finds warnings and errors, and
    journald adds the time; a terminal gets the time from us."""

    def __init__(self, journal: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


def syslog_priority(level: int) -> int:
    """The syslog priority of a logging level: err 3, warning 4, info 6, debug 7."""
    for threshold, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4)):
        if level >= threshold:
            return priority
    return 6 if level >= logging.INFO else 7


def setup_logging(level: str) -> None:
    """Records to stderr; when stderr is a log file (`bitdust daemon`), that file is rotated."""
    rotation = LogFileRotation.of_stderr()
    handler = (
        logging.StreamHandler(sys.stderr)
        if rotation is None
        else RotatingStreamHandler(sys.stderr, rotation)
    )
    handler.setFormatter(LogFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Notifier:
    """sd_notify, silent when no NOTIFY_SOCKET was given (as on a terminal)."""

    def __init__(self) -> None:
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
            if self._notifier.socket is not None:
                # Sent from the event loop: a reader that falls behind (a full datagram queue)
                # must cost a dropped status line, never a frozen node.
                self._notifier.socket.setblocking(False)

    def __call__(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of systemd's WatchdogSec, when the watchdog is meant for this process.

        The onefile bootloader is the unit's main pid and we are its child, so WATCHDOG_PID may
        name our parent; NotifyAccess=all lets our pings count.
        """
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and pid not in (str(os.getpid()), str(os.getppid())):
            return None
        return int(usec) / 2e6


class PidFile:
    """The instance's pidfile, locked for as long as the node runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        running = pid_of_running(self.path)
        if running is not None:
            raise StartError(f"instance is already running (pid {running}, pidfile {self.path})")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartError(f"instance is already running (pidfile {self.path})") from None
        manager = "systemd" if os.environ.get("INVOCATION_ID") else "bitdust"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {manager}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def _bitdust_gid() -> int | None:
    try:
        return grp.getgrnam("bitdust").gr_gid
    except KeyError:
        return None


def write_secret(path: Path) -> str:
    """A fresh API secret: 0640 group bitdust when that group exists (its members may use the
    CLI), else 0600."""
    secret = secrets.token_urlsafe(32)
    gid = _bitdust_gid()
    mode = 0o640 if gid is not None else 0o600
    atomic_write(path, (secret + "\n").encode(), mode=mode, overwrite=True, error=StartError)
    if gid is not None:
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid)
    return secret


class Daemon:
    """One running instance: owns the node, the API listeners and the process-wide signals."""

    def __init__(
        self,
        paths: Paths,
        config: Config,
        flags: dict[str, str],
        catalog: Sequence[ServiceSpec] = CATALOG,
    ) -> None:
        self.paths = paths
        self.config = config
        self.flags = flags
        self.catalog = catalog
        self.node = Node(config, catalog)
        self.exit_status = ExitStatus.OK
        self.notify = Notifier()
        self.started = time.time()
        self.version = __version__
        self.secret: str | None = None
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.exporter = Exporter(self.metric_families)

    # -- what the API may ask ----------------------------------------------------------------

    def request_stop(self) -> None:
        asyncio.get_running_loop().call_soon(self._stop.set)

    def reload(self) -> tuple[list[str], list[str]]:
        """Re-read every layer; a broken config is refused and the node keeps the old one."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            config = load_checked_config(self.paths, self.flags)
        except StartError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notify("READY=1", "STATUS=reload refused: " + str(exc).splitlines()[0])
            raise ConfigError(f"reload refused: {exc}") from None
        applied, pending = self.node.reload(config)
        self.config = config
        if applied:
            log.info("reloaded: %s", ", ".join(applied))
        if pending:
            log.warning("restart needed to apply: %s", ", ".join(pending))
        self.notify("READY=1", "STATUS=" + self.node.status_line())
        return applied, pending

    def set_option(self, key: str, raw: str) -> tuple[str, list[str], list[str]]:
        """The API's config/set: checked with the whole configuration, written to
        api-settings.conf in the state dir only when accepted and in force (not overridden by
        the environment or the command line), then reloaded."""
        edit = plan_edit(self.paths.api_settings, key, raw)
        config = self._checked(edit)
        check_in_force(config, edit.key, edit.path)
        edit.write()
        applied, pending = self.reload()
        return edit.value, applied, pending

    def unset_option(self, key: str) -> tuple[bool, list[str], list[str]]:
        """The API's config/unset: the key's line leaves api-settings.conf, so the layer below
        decides; (whether there was one, applied, pending)."""
        edit = plan_unset(self.paths.api_settings, key)
        if edit is None:
            return False, [], []
        self._checked(edit)
        edit.write()
        applied, pending = self.reload()
        return True, applied, pending

    def _checked(self, edit: ConffileEdit) -> Config:
        try:
            return load_checked_config(self.paths, self.flags, edit)
        except StartError as exc:
            raise ConfigError(f"{edit.key} not changed: with it, {exc}") from None

    async def restart_services(self) -> None:
        """Stop every service, re-read the config and start again, in this process.

        A broken config is refused before anything stops. When the services do not come back,
        the process ends as a failed start does: a node with no services must not stay up
        answering the watchdog. One restart at a time: a second one would stop services the
        first is still starting."""
        if not self.node.ready:
            raise ServiceError("the services are starting or restarting; try again when ready")
        try:
            config = load_checked_config(self.paths, self.flags)
        except StartError as exc:
            raise ConfigError(f"restart refused, the services keep running: {exc}") from None
        await self.node.stop()
        self.config = config
        self.node = Node(config, self.catalog)
        try:
            await self.node.start()
        except ServiceStartFailed as exc:
            self._fail(str(exc), exit_status_for(exc))
            raise ServiceError(f"restart failed, the node is stopping: {exc}") from None
        self.notify("READY=1", "STATUS=" + self.node.status_line())

    # -- the process -------------------------------------------------------------------------

    async def main(self) -> ExitStatus:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        self.notify("STATUS=starting")
        heartbeat = None
        try:
            self.secret = write_secret(self.paths.api_secret)
            await self._start_api()
            if await self._start_services():
                self.notify("READY=1", "STATUS=" + self.node.status_line())
                log.info("node %s ready: %s", self.paths.instance, self.node.status_line())
                heartbeat = asyncio.create_task(self._heartbeat())
                await self._stop.wait()
        except StartError as exc:
            self._fail(str(exc), ExitStatus.FAILURE)
        except Exception as exc:
            if not isinstance(exc, EXPECTED_FAILURES):
                log.debug("unexpected error while starting", exc_info=exc)
            self._fail(failure_reason(exc), exit_status_for(exc))
        finally:
            self.notify("STOPPING=1")
            log.info("stopping")
            if heartbeat is not None:
                heartbeat.cancel()
            try:
                await asyncio.wait_for(self.node.stop(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("services did not stop within %.0f s", STOP_TIMEOUT)
            await self._stop_api()
            self.paths.api_secret.unlink(missing_ok=True)
        return self.exit_status

    async def _start_services(self) -> bool:
        """Start the services, unless SIGTERM comes first: a service still starting is then
        cancelled (those started are stopped on the way out, as always) and False returned, so
        the process stops within systemd's TimeoutStopSec= however slow a start is."""
        starting = asyncio.ensure_future(self.node.start())
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if starting.done():
            starting.result()  # ServiceStartFailed, if it failed
            return True
        log.info("stop requested while services were starting")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return False

    def _fail(self, reason: str, status: ExitStatus) -> None:
        """The node cannot go on: say why on one line, tell systemd, and end the process with
        ``status``."""
        log.error("%s", reason)
        self.notify("STATUS=failed: " + reason.splitlines()[0])
        self.exit_status = status
        self._stop.set()

    def _reload_on_signal(self) -> None:
        with contextlib.suppress(ConfigError):
            self.reload()

    async def _heartbeat(self) -> None:
        """WATCHDOG=1 at half of systemd's interval, and STATUS= whenever the node's line
        changes (a DHT that joins late, an identity that appears)."""
        watchdog = Notifier.watchdog_interval()
        interval = min(watchdog or STATUS_INTERVAL, STATUS_INTERVAL)
        status = self.node.status_line()
        while True:
            fields = ["WATCHDOG=1"] if watchdog is not None else []
            line = self.node.status_line()
            if line != status:
                status = line
                fields.append("STATUS=" + status)
            if fields:
                self.notify(*fields)
            await asyncio.sleep(interval)

    def _api_secret(self) -> str | None:
        return self.secret if self.config["interface/api/auth-secret-enabled"] else None

    def metric_families(self) -> list[Family]:
        """The figures `GET /metrics` serves, read from the node as it is now."""
        return node_families(self.node, self.paths.instance, self.version)

    async def _start_api(self) -> None:
        allowed = {self.node.api_host}
        app = build_app(api_routes.all_routes(), self._api_secret, allowed, self, self.exporter)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        port = self.config["interface/api/rest-http-port"]
        socket_path = self.paths.api_socket
        try:
            await web.TCPSite(self._runner, self.node.api_host, port, reuse_address=True).start()
            socket_path.unlink(missing_ok=True)
            await web.UnixSite(self._runner, str(socket_path)).start()
        except OSError as exc:
            raise StartError(f"cannot start the REST API: {exc}") from None
        gid = _bitdust_gid()
        os.chmod(socket_path, 0o660 if gid is not None else 0o600)
        if gid is not None:
            with contextlib.suppress(PermissionError):
                os.chown(socket_path, -1, gid)
        log.info("REST API on http://%s:%d and %s", self.node.api_host, self.api_port, socket_path)
        metrics_port = self.config["interface/metrics/port"]
        if metrics_port:
            self._metrics_runner = web.AppRunner(
                metrics_app(self.exporter, allowed), access_log=None, handle_signals=False
            )
            await self._metrics_runner.setup()
            site = web.TCPSite(self._metrics_runner, self.node.api_host, metrics_port)
            try:
                await site.start()
            except OSError as exc:
                raise StartError(f"cannot start the metrics listener: {exc}") from None
            log.info("metrics on http://%s:%d/metrics", self.node.api_host, metrics_port)

    @property
    def api_port(self) -> int:
        """The bound TCP port (the setting may be 0 = any free port)."""
        if self._runner is None:
            return 0
        return next((a[1] for a in self._runner.addresses if isinstance(a, tuple)), 0)

    async def _stop_api(self) -> None:
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._metrics_runner = None
        self.paths.api_socket.unlink(missing_ok=True)

    def info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "instance": self.paths.instance,
            "role": self.config.role,
            "role_reason": self.config.role_reason,
            "pid": os.getpid(),
            "started": self.started,
            "uptime": round(time.time() - self.started, 3),
            "ready": self.node.ready,
            "state_dir": str(self.paths.state_dir),
            "runtime_dir": str(self.paths.runtime_dir),
            "config_file": str(self.paths.conffile),
            "api": {"host": self.node.api_host, "port": self.api_port},
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        }


def exit_status_for(exc: Exception) -> ExitStatus:
    """Whether a restart can cure what ended the node: not a bad setting, nor a kept file of a
    newer format; anything else may pass (a port taken, a peer away), so systemd retries."""
    cause = exc.cause if isinstance(exc, ServiceStartFailed) else exc
    if isinstance(cause, DataFormatError):
        return ExitStatus.DATA_FORMAT
    if isinstance(cause, ConfigError):
        return ExitStatus.CONFIG
    return ExitStatus.FAILURE


def run(paths: Paths, flags: dict[str, str]) -> int:
    """`bitdust run`: check everything, then serve until SIGTERM. Returns the exit code."""
    try:
        config = load_checked_config(paths, flags)
        setup_logging(config["logs/level"])
        paths.make_dirs()
        pidfile = PidFile(paths.pidfile)
        pidfile.acquire()
    except (StartError, ConfigError) as exc:
        for line in str(exc).splitlines():
            print(f"bitdust: {line}", file=sys.stderr)
        return ExitStatus.CONFIG
    try:
        bound_allocator_memory()
        try:
            import uvloop
        except ImportError:
            uvloop = None
        daemon = Daemon(paths, config, flags)
        if uvloop is not None:
            return uvloop.run(daemon.main())
        return asyncio.run(daemon.main())
    finally:
        pidfile.release()
