"""The asyncio shell around ``DHTNode``: a UDP endpoint, one timer and futures for user calls.

It owns the clocks (``time.monotonic`` for the core, ``time.time`` for ``wall_offset``) and the
socket, and nothing else: every decision is the core's. After each input it sends what the core
queued, resolves futures from the core's events and re-arms the single ``call_later`` timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bitdust.coretimer import CoreTimer
from bitdust.dht.database import Database
from bitdust.dht.events import (
    BootstrapDone,
    Event,
    JoinRetry,
    LookupDone,
    PingDone,
    StoreDone,
    ValueFound,
)
from bitdust.dht.joining import JoinState
from bitdust.dht.persistence import MemoryPersistence, Persistence
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import Record
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer, Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.wire import ID_SIZE, Contact
from bitdust.netaddr import Addr, normalize_addr

log = logging.getLogger(__name__)

# Seconds between a change and its commit to the database: writes are batched, and the core
# never waits on the disk while it handles a datagram.
FLUSH_DELAY = 0.5


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: DHTEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        peer = normalize_addr(addr)
        self.endpoint._feed(lambda now: self.endpoint.node.receive_datagram(data, peer, now))

    def error_received(self, exc: Exception) -> None:
        log.debug("DHT socket error: %s", exc)


class DHTEndpoint:
    """A running DHT node on its UDP socket: awaitable lookups, join status and figures.

    Not a node ``Service``: the ``entangled-dht`` service (``service.py``) owns one.
    """

    def __init__(self, node: DHTNode, database: Database | None) -> None:
        self.node = node
        self.database = database
        self._flush_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer = CoreTimer(self._loop, self._on_timer, time.monotonic)
        self._futures: dict[int, asyncio.Future[Event]] = {}
        self._closed = False

    # Status -----------------------------------------------------------------------------------

    @property
    def address(self) -> Addr:
        assert self._transport is not None
        return normalize_addr(self._transport.get_extra_info("sockname"))

    @property
    def status(self) -> str:
        """One line for ``network/status`` and sd_notify."""
        contacts = len(self.node.table)
        state = self.node.joining.state
        if state is JoinState.GENESIS:
            return f"genesis node, {contacts} contacts"
        return f"{self.node.joining.describe(time.monotonic())}, {contacts} contacts"

    @property
    def joined(self) -> bool:
        return self.node.joined

    def stats(self) -> dict[str, object]:
        """``contacts`` (routing-table size), ``buckets``, ``items`` and counters, plus status."""
        out = self.node.stats()
        out.update(udp_port=self.address[1], joined=self.joined, status=self.status)
        return out

    # User calls -------------------------------------------------------------------------------

    async def find_node(self, target: bytes) -> list[Contact]:
        """The k closest live nodes to ``target`` (20 bytes), nearest first."""
        event = await self._run(lambda now: self.node.find_node(target, now))
        assert isinstance(event, LookupDone)
        return list(event.nodes)

    async def get_value(self, key: bytes) -> list[Record]:
        """Verified, unexpired records under ``key``, one per signer, newest first."""
        event = await self._run(lambda now: self.node.get_value(key, now))
        assert isinstance(event, ValueFound)
        return list(event.records)

    async def set_value(
        self,
        key: bytes,
        value: bytes,
        *,
        age: int | None = None,
        owner: str | None = None,
        signer: Signer | None = None,
        name: bytes | None = None,
    ) -> int:
        """Sign ``value`` (with ``signer``, default the node's key) and store it under ``key``,
        or with ``name`` under the signer's owned key of that name; returns how many nodes took
        it. RecordRefused when the record breaks a rule."""
        record = self.node.sign(key, value, time.monotonic(), age, owner, signer, name)
        event = await self._run(lambda now: self.node.set_value(record, now))
        assert isinstance(event, StoreDone)
        return event.stored_count

    async def ping(self, addr: Addr) -> Contact | None:
        event = await self._run(lambda now: self.node.ping(addr, now))
        assert isinstance(event, PingDone)
        return event.contact

    async def bootstrap(self, addrs: Sequence[Addr]) -> bool:
        """One join attempt through ``addrs`` (IP literals); True when a known node answered."""
        event = await self._run(lambda now: self.node.bootstrap(list(addrs), now))
        return isinstance(event, BootstrapDone)

    def join(self, known_nodes: Sequence[Addr]) -> None:
        """Join in the background (the core retries with back-off until a known node answers);
        an empty list makes this a lone genesis node. The node serves requests meanwhile."""
        self._feed(lambda now: self.node.join(list(known_nodes), now))

    async def close(self) -> None:
        """Stop the join loop and timer, save the routing table, close socket and database."""
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self._transport is not None:
            self._transport.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.node.save()
        if self.database is not None:
            self.database.close()

    # Plumbing ---------------------------------------------------------------------------------

    async def _run(self, start: Callable[[float], int]) -> Event:
        if self._closed:
            raise RuntimeError("the DHT endpoint is closed")
        op_id = start(time.monotonic())
        future: asyncio.Future[Event] = self._loop.create_future()
        self._futures[op_id] = future
        self._pump()
        try:
            return await future
        finally:
            self._futures.pop(op_id, None)

    def _feed(self, call: Callable[[float], None]) -> None:
        if self._closed:
            return
        try:
            call(time.monotonic())
        except Exception:  # the core must survive its own bugs; the failure is logged and counted
            log.exception("DHT core failed on an input")
            self.node.counters["internal_errors"] += 1
        self._pump()

    def _pump(self) -> None:
        node = self.node
        if self._transport is not None:
            for data, addr in node.datagrams_to_send():
                try:
                    self._transport.sendto(data, addr)
                except (OSError, ValueError) as exc:
                    log.debug("DHT: cannot send to %s: %s", addr, exc)
        while (event := node.next_event()) is not None:
            if isinstance(event, JoinRetry):
                log.warning("DHT: %s", node.joining.describe(time.monotonic()))
            future = self._futures.get(event.op_id)
            if future is not None and not future.done():
                future.set_result(event)
        if self.database is not None and self.database.dirty and self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_DELAY, self._flush)
        if not self._closed:
            self._timer.arm(node.get_timer())

    def _flush(self) -> None:
        self._flush_handle = None
        if self.database is not None and not self._closed:
            self.database.flush()

    def _on_timer(self) -> None:
        self.node.wall_offset = time.time() - time.monotonic()
        self._feed(self.node.handle_timer)


async def start_dht(
    host: str,
    port: int,
    db_path: str | os.PathLike[str] | None,
    settings: DHTSettings | None = None,
    signer: Signer | None = None,
    known_nodes: Sequence[Addr] = (),
) -> DHTEndpoint:
    """Open the database, bind UDP ``host:port`` (0 = any free port) and start joining.

    ``known_nodes`` are (IP, port) pairs already resolved; empty means a genesis node. Without
    ``db_path`` the node keeps nothing across restarts. ``signer`` defaults to the node's own
    Ed25519 key, kept in the database.
    """
    settings = settings or DHTSettings()
    database = Database(Path(db_path)) if db_path is not None else None
    persistence: Persistence = database if database is not None else MemoryPersistence()
    try:
        node_id = database.node_id() if database is not None else os.urandom(ID_SIZE)
        if signer is None:
            signer = database.signer() if database is not None else Ed25519Signer.generate()
        now = time.monotonic()
        node = DHTNode(
            node_id,
            settings,
            persistence,
            signer,
            verifiers=STANDARD_VERIFIERS,
            now=now,
            wall_offset=time.time() - now,
        )
        endpoint = DHTEndpoint(node, database)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(endpoint), local_addr=(host, port)
        )
    except BaseException:
        if database is not None:
            database.close()
        raise
    endpoint._transport = transport
    endpoint._pump()
    endpoint.join(known_nodes)
    return endpoint
