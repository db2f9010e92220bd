"""The identity server's asyncio shells: they move bytes, the rules live elsewhere.

The policy lives in :class:`~bitdust.identity.store.IdentityStore` and the TCP framing in
:mod:`bitdust.identity.intake`; this module only moves bytes:

* HTTP (aiohttp) on ``web-port``: ``GET /<name>.xml`` (``application/xml``, ``ETag``,
  ``Last-Modified``, ``304`` on ``If-None-Match``/``If-Modified-Since``, ``HEAD`` too) and
  ``GET /``, an index page titled ``Identities on <host>`` linking every stored name. Nothing
  else is served; request bodies are not accepted.
* TCP intake on ``tcp-port``: one identity per connection (see :mod:`bitdust.identity.intake`),
  bounded in size, time (``io_timeout``) and concurrent connections.
* A periodic task that calls :meth:`IdentityStore.expire`.

The clients of identity servers are in :mod:`bitdust.identity.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import html
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

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

__all__ = ["IdentityServer", "start_identity_server"]

log = logging.getLogger(__name__)

DEFAULT_IO_TIMEOUT = 10.0
DEFAULT_EXPIRE_INTERVAL = 3600.0
DEFAULT_MAX_CONNECTIONS = 64
_READ_CHUNK = 16 * 1024


@dataclass
class IdentityServer:
    """A running identity server; ``web_port``/``tcp_port`` are the bound ports (useful with 0)."""

    store: IdentityStore
    listen_host: str
    web_port: int
    tcp_port: int
    _runner: web.AppRunner
    _tcp_server: asyncio.Server
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closed: bool = False

    async def close(self) -> None:
        """Stop listening, finish or cancel connections, stop the expiry task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._tcp_server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._tcp_server.wait_closed(), 2.0)
        await self._runner.cleanup()
        log.info("identity server on %s stopped", self.listen_host)


async def start_identity_server(
    store: IdentityStore,
    listen_host: str,
    web_port: int,
    tcp_port: int,
    *,
    clock: Callable[[], float] = time.time,
    expire_interval: float = DEFAULT_EXPIRE_INTERVAL,
    io_timeout: float = DEFAULT_IO_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> IdentityServer:
    """Start HTTP on ``listen_host:web_port`` and TCP intake on ``listen_host:tcp_port``.

    Port 0 picks a free port (read it back from the returned handle). ``clock`` gives wall-clock
    seconds for the store's touch/expiry times. Raises ``OSError`` when a port cannot be bound
    (the caller reports "port in use").
    """
    web_socket = socket.create_server((listen_host, web_port), reuse_port=False)
    try:
        runner = web.AppRunner(_make_app(store), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, web_socket).start()
    except BaseException:
        web_socket.close()
        raise
    connections = asyncio.Semaphore(max_connections)
    handler = _TcpIntake(store, clock, io_timeout, connections)
    try:
        tcp_server = await asyncio.start_server(handler.handle, listen_host, tcp_port)
    except BaseException:
        await runner.cleanup()
        raise
    server = IdentityServer(
        store=store,
        listen_host=listen_host,
        web_port=web_socket.getsockname()[1],
        tcp_port=tcp_server.sockets[0].getsockname()[1],
        _runner=runner,
        _tcp_server=tcp_server,
    )
    handler.tasks = server._tasks
    expiry = asyncio.create_task(_expire_loop(store, clock, expire_interval))
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


def _make_app(store: IdentityStore) -> web.Application:
    app = web.Application(client_max_size=1024)

    async def index(request: web.Request) -> web.Response:
        host = html.escape(store.host)
        items = "\n".join(
            f'    <li><a href="/{html.escape(name)}.xml">{html.escape(name)}</a></li>'
            for name in store.names()
        )
        body = (
            '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            f"<title>Identities on {host}</title>\n</head>\n<body>\n"
            f"<h1>Identities on {host}</h1>\n<ul>\n{items}\n</ul>\n</body>\n</html>\n"
        )
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def identity(request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        if not filename.endswith(".xml"):
            raise web.HTTPNotFound(text="not found\n")
        name = filename[:-4]
        try:
            validate_name(name)
        except IdentityError:
            raise web.HTTPNotFound(text="not found\n") from None
        stored = store.lookup(name)
        if stored is None:
            raise web.HTTPNotFound(text=f"no identity {name} on this server\n")
        headers = {
            "ETag": stored.etag,
            "Last-Modified": email.utils.formatdate(stored.mtime, usegmt=True),
            "Cache-Control": "no-cache",
        }
        if _not_modified(request, stored.etag, stored.mtime):
            return web.Response(status=304, headers=headers)
        return web.Response(body=stored.data, content_type="application/xml", headers=headers)

    app.router.add_get("/", index)
    app.router.add_get("/{filename}", identity)
    return app


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip() for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags or f"W/{etag}" in tags
    since = request.if_modified_since
    return since is not None and int(mtime) <= since.timestamp()


# -- TCP intake -----------------------------------------------------------------------------------


class _TcpIntake:
    def __init__(
        self,
        store: IdentityStore,
        clock: Callable[[], float],
        io_timeout: float,
        connections: asyncio.Semaphore,
    ) -> None:
        self.store = store
        self.clock = clock
        self.io_timeout = io_timeout
        self.connections = connections
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        peer = _peer_name(writer)
        try:
            if self.connections.locked():
                log.warning("identity intake busy: refused connection from %s", peer)
                await self._reply(writer, False, "server busy, try again later")
                return
            async with self.connections:
                await self._serve(reader, writer, peer)
        finally:
            if task is not None:
                self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        connection = IntakeConnection(self.store.size_limit)
        try:
            async with asyncio.timeout(self.io_timeout):
                event = connection.next_event()
                while isinstance(event, NeedData):
                    connection.receive_data(await reader.read(_READ_CHUNK))
                    event = connection.next_event()
        except TimeoutError:
            log.warning("identity intake from %s: timed out", peer)
            await self._reply(writer, False, "timed out waiting for the identity")
            return
        except OSError as exc:
            log.info("identity intake from %s: connection lost (%s)", peer, exc)
            return
        if isinstance(event, ProtocolError):
            log.warning("identity refused from %s: %s", peer, event.reason)
            await self._reply(writer, False, event.reason)
            return
        assert isinstance(event, IdentityReceived)
        try:
            identity = self.store.submit(event.data, self.clock(), peer=peer)
        except IdentityRefused as refusal:
            await self._reply(writer, False, refusal.reason)
            return
        await self._reply(writer, True, self.store.idurl_for(identity.name))

    async def _reply(self, writer: asyncio.StreamWriter, ok: bool, text: str) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            writer.write(format_reply(ok, text))
            await asyncio.wait_for(writer.drain(), self.io_timeout)


async def _expire_loop(store: IdentityStore, clock: Callable[[], float], interval: float) -> None:
    while True:
        try:
            store.expire(clock())
        except Exception:  # keep serving; the next round retries
            log.exception("identity expiry failed")
        await asyncio.sleep(interval)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unknown")
