"""The identity server's asyncio shells: they move bytes, the rules live elsewhere.

The policy lives in :class:`~bitdust.identity.store.IdentityStore` and the TCP framing in
:mod:`bitdust.identity.intake`; this module only moves bytes:

* HTTP (aiohttp) on ``web-port``: ``GET /<name>.xml`` (``application/xml``, ``ETag``,
  ``Last-Modified``, ``304`` on ``If-None-Match``/``If-Modified-Since``, ``HEAD`` too) and
  ``GET /``, an index page titled ``Identities on <host>`` linking every stored name. Nothing
  else is served; request bodies are not accepted.
* TCP intake on ``tcp-port``: one identity per connection (see :mod:`bitdust.identity.intake`),
  bounded in size and time; the store's blocking work runs in one worker thread.
* Both listeners cap connections per client address and in total, and close a client that does
  not send a whole request in time (:class:`ServerLimits`): idle or slow clients cannot lock
  legitimate ones out nor use up the process's file descriptors.
* A periodic task that calls :meth:`IdentityStore.expire`.

The clients of identity servers are in :mod:`bitdust.identity.client`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bitdust.identity.errors import IdentityError, IdentityRefused
from bitdust.identity.idurl import validate_name
from bitdust.identity.intake import (
    IdentityReceived,
    IntakeConnection,
    NeedData,
    ProtocolError,
    format_reply,
)
from bitdust.identity.store import IdentityStore
from bitdust.logs import RateLimitedLog

__all__ = ["ConnectionCaps", "IdentityServer", "ServerLimits", "start_identity_server"]

log = logging.getLogger(__name__)
_busy_log = RateLimitedLog(log)  # a lockout attempt must not flood the journal

DEFAULT_EXPIRE_INTERVAL = 3600.0
_READ_CHUNK = 16 * 1024
# The answer to an HTTP connection over a cap; it is closed right after.
_HTTP_BUSY_BODY = b"server busy, try again later\n"
_HTTP_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_HTTP_BUSY_BODY)
) + _HTTP_BUSY_BODY


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client, and all of them together, may hold of an identity server.

    The caps keep the process's file descriptors (``LimitNOFILE=`` of the unit) for the REST API
    and the node's other services: at most ``http_connections + intake_connections`` sockets
    are ever held by this server's clients.
    """

    #: seconds a client has, from connecting or from its last response, to send a whole
    #: request head; then the connection is closed (one header line every few seconds does
    #: not keep it open)
    http_request_deadline: float = 10.0
    #: seconds a request body (this server reads none) is drained before the connection closes
    http_body_deadline: float = 5.0
    http_connections: int = 512
    #: per client address; behind nginx every client is nginx, so the service raises it to
    #: ``http_connections`` there and nginx's own limits apply per client
    http_connections_per_address: int = 16
    #: seconds a client has to send one whole identity over the TCP intake
    intake_deadline: float = 5.0
    intake_connections: int = 64
    intake_connections_per_address: int = 4

    @classmethod
    def within_descriptors(cls, nofile: int) -> ServerLimits:
        """The defaults, shrunk so that this server's clients hold at most a third of ``nofile``
        descriptors (the process's soft ``RLIMIT_NOFILE``): the REST API, its socket and the
        other services keep the rest."""
        limits = cls()
        http = max(1, min(limits.http_connections, nofile // 4))
        intake = max(1, min(limits.intake_connections, nofile // 12))
        return dataclasses.replace(
            limits,
            http_connections=http,
            http_connections_per_address=min(limits.http_connections_per_address, http),
            intake_connections=intake,
            intake_connections_per_address=min(limits.intake_connections_per_address, intake),
        )


class ConnectionCaps:
    """Counts open connections per address and in total; :meth:`admit` says whether one more
    fits. Plain bookkeeping, no I/O."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._open: dict[str, int] = {}
        self._count = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address`` if it fits; ``False`` (not counted) if not."""
        held = self._open.get(address, 0)
        if self._count >= self.total or held >= self.per_address:
            return False
        self._open[address] = held + 1
        self._count += 1
        return True

    def release(self, address: str) -> None:
        """A connection :meth:`admit` counted has closed."""
        held = self._open.pop(address, 0) - 1
        if held > 0:
            self._open[address] = held
        self._count -= 1

    @property
    def count(self) -> int:
        return self._count


@dataclass
class IdentityServer:
    """A running identity server; ``web_port``/``tcp_port`` are the bound ports (useful with 0)."""

    store: IdentityStore
    listen_host: str
    web_port: int
    tcp_port: int
    limits: ServerLimits
    _runner: web.ServerRunner
    _http_server: asyncio.Server
    _tcp_server: asyncio.Server
    _worker: concurrent.futures.ThreadPoolExecutor
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closed: bool = False

    async def close(self) -> None:
        """Stop listening, finish or cancel connections, stop the expiry task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._tcp_server.close()
        self._http_server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._tcp_server.wait_closed(), 2.0)
        await self._runner.cleanup()
        self._worker.shutdown(wait=False, cancel_futures=True)
        log.info("identity server on %s stopped", self.listen_host)


async def start_identity_server(
    store: IdentityStore,
    listen_host: str,
    web_port: int,
    tcp_port: int,
    *,
    clock: Callable[[], float] = time.time,
    expire_interval: float = DEFAULT_EXPIRE_INTERVAL,
    limits: ServerLimits = ServerLimits(),
) -> IdentityServer:
    """Start HTTP on ``listen_host:web_port`` and TCP intake on ``listen_host:tcp_port``.

    Port 0 picks a free port (read it back from the returned handle). ``clock`` gives wall-clock
    seconds for the store's touch/expiry times. The store's blocking work (signature checks,
    writes, expiry) runs in one worker thread, one submission at a time. Raises ``OSError`` when
    a port cannot be bound (the caller reports "port in use").
    """
    loop = asyncio.get_running_loop()
    worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="identity-store")
    http = web.Server(
        _http_handler(store),
        access_log=None,
        keepalive_timeout=limits.http_request_deadline,
        lingering_time=limits.http_body_deadline,
        logger=_HttpErrorLog(),
    )
    runner = web.ServerRunner(http, handle_signals=False)
    await runner.setup()
    http_caps = ConnectionCaps(limits.http_connections, limits.http_connections_per_address)
    try:
        http_server = await loop.create_server(
            lambda: _CappedHttp(runner.server, http_caps), listen_host, web_port
        )
    except BaseException:
        await runner.cleanup()
        raise
    intake_caps = ConnectionCaps(limits.intake_connections, limits.intake_connections_per_address)
    handler = _TcpIntake(store, clock, limits.intake_deadline, intake_caps, worker)
    try:
        tcp_server = await asyncio.start_server(handler.handle, listen_host, tcp_port)
    except BaseException:
        http_server.close()
        await runner.cleanup()
        raise
    server = IdentityServer(
        store=store,
        listen_host=listen_host,
        web_port=http_server.sockets[0].getsockname()[1],
        tcp_port=tcp_server.sockets[0].getsockname()[1],
        limits=limits,
        _runner=runner,
        _http_server=http_server,
        _tcp_server=tcp_server,
        _worker=worker,
    )
    handler.tasks = server._tasks
    expiry = asyncio.create_task(_expire_loop(store, clock, expire_interval, worker))
    server._tasks.add(expiry)
    expiry.add_done_callback(server._tasks.discard)
    log.info(
        "identity server for %s: HTTP %s:%d, TCP %s:%d",
        store.host,
        listen_host,
        server.web_port,
        listen_host,
        server.tcp_port,
    )
    return server


# -- HTTP -----------------------------------------------------------------------------------------


def _http_handler(store: IdentityStore) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    """The whole site: the index at ``/`` and ``/<name>.xml``, for GET and HEAD. One function,
    not an aiohttp application: its router and middleware chain cost about a quarter of every
    request, and a site of two pages has nothing for them to do."""
    index_page: tuple[int, str] = (-1, "")  # (store.names_generation, page): built on change

    def index() -> web.Response:
        nonlocal index_page
        generation = store.names_generation
        if index_page[0] != generation:  # 100,000 names take ~0.1 s to list: not per request
            index_page = (generation, _index_page(store.host, store.names()))
        return web.Response(text=index_page[1], content_type="text/html", charset="utf-8")

    def identity(request: web.BaseRequest, filename: str) -> web.Response:
        name = filename.removesuffix(".xml")
        if name == filename:
            return _not_found()
        try:
            validate_name(name)
        except IdentityError:
            return _not_found()
        stored = store.lookup(name)
        if stored is None:
            return web.Response(status=404, text=f"no identity {name} on this server\n")
        headers = {
            "ETag": stored.etag,
            "Last-Modified": stored.last_modified,
            "Cache-Control": "no-cache",
        }
        store.served += 1
        if _not_modified(request, stored.etag, stored.mtime):
            return web.Response(status=304, headers=headers)
        return web.Response(body=stored.data, content_type="application/xml", headers=headers)

    async def handle(request: web.BaseRequest) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="method not allowed\n", headers=_ALLOW)
        path = request.path
        if path == "/":
            return index()
        filename = path[1:]
        if "/" in filename:
            return _not_found()
        return identity(request, filename)

    return handle


_ALLOW = {"Allow": "GET, HEAD"}


def _not_found() -> web.Response:
    return web.Response(status=404, text="not found\n")


def _index_page(host: str, names: list[str]) -> str:
    host = html.escape(host)
    items = "\n".join(
        f'    <li><a href="/{html.escape(name)}.xml">{html.escape(name)}</a></li>' for name in names
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>Identities on {host}</title>\n</head>\n<body>\n"
        f"<h1>Identities on {host}</h1>\n<ul>\n{items}\n</ul>\n</body>\n</html>\n"
    )


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip() for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags or f"W/{etag}" in tags
    since = request.if_modified_since
    return since is not None and int(mtime) <= since.timestamp()


class _CappedHttp(asyncio.Protocol):
    """aiohttp's protocol for one connection, admitted only within the :class:`ConnectionCaps`;
    a connection over a cap gets ``503`` and is closed before aiohttp sees it."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], caps: ConnectionCaps) -> None:
        self._factory = factory
        self._caps = caps
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._address = _peer_address(transport)
        if not self._caps.admit(self._address):
            _busy_log.warning("identity HTTP busy: refused a connection from %s", self._address)
            cast(asyncio.WriteTransport, transport).write(_HTTP_BUSY)  # uvloop's are not subclasses
            transport.close()
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._caps.release(self._address)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class _HttpErrorLog:
    """The logger aiohttp's protocol writes to: a client's malformed request is one
    rate-limited line without a traceback; anything else is a bug of ours and keeps its
    traceback."""

    def __init__(self) -> None:
        self._client_errors = RateLimitedLog(log)

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass  # aiohttp's debug lines (e.g. a client speaking TLS to this port) are noise here

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._client_errors.info(
                "identity HTTP: bad request from %s: %s", *args[:1], _one_line(exc_info)
            )
        else:
            log.error(msg, *args, exc_info=exc_info or True)


# -- TCP intake -----------------------------------------------------------------------------------


class _TcpIntake:
    def __init__(
        self,
        store: IdentityStore,
        clock: Callable[[], float],
        deadline: float,
        caps: ConnectionCaps,
        worker: concurrent.futures.Executor,
    ) -> None:
        self.store = store
        self.clock = clock
        self.deadline = deadline
        self.caps = caps
        self.worker = worker
        self.tasks: set[asyncio.Task[None]] = set()
        self._log = RateLimitedLog(log)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        address = _peer_address(writer.transport)
        admitted = self.caps.admit(address)
        try:
            if not admitted:
                _busy_log.warning("identity intake busy: refused a connection from %s", address)
                await self._reply(writer, False, "server busy, try again later")
                return
            await self._serve(reader, writer, address)
        finally:
            if admitted:
                self.caps.release(address)
            if task is not None:
                self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> None:
        connection = IntakeConnection(self.store.size_limit)
        try:
            async with asyncio.timeout(self.deadline):
                event = connection.next_event()
                while isinstance(event, NeedData):
                    connection.receive_data(await reader.read(_READ_CHUNK))
                    event = connection.next_event()
        except TimeoutError:
            self._log.info("identity intake from %s: timed out", address)
            await self._reply(writer, False, "timed out waiting for the identity")
            return
        except OSError as exc:
            self._log.info("identity intake from %s: connection lost (%s)", address, exc)
            return
        if isinstance(event, ProtocolError):
            self._log.info("identity intake from %s: %s", address, event.reason)
            await self._reply(writer, False, event.reason)
            return
        assert isinstance(event, IdentityReceived)
        loop = asyncio.get_running_loop()
        try:
            identity = await loop.run_in_executor(
                self.worker, self.store.submit, event.data, self.clock(), address
            )
        except IdentityRefused as refusal:
            await self._reply(writer, False, refusal.reason)
            return
        await self._reply(writer, True, self.store.idurl_for(identity.name))

    async def _reply(self, writer: asyncio.StreamWriter, ok: bool, text: str) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            writer.write(format_reply(ok, text))
            await asyncio.wait_for(writer.drain(), self.deadline)


async def _expire_loop(
    store: IdentityStore,
    clock: Callable[[], float],
    interval: float,
    worker: concurrent.futures.Executor,
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(worker, store.expire, clock())
        except Exception:  # keep serving; the next round retries
            log.exception("identity expiry failed")
        await asyncio.sleep(interval)


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
