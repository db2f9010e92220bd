"""A deterministic in-memory network driving real ``DHTNode`` cores.

One seeded RNG, one fake clock and one event queue stand in for sockets and time: datagrams are
delivered after a random latency (or lost), and each node's ``get_timer`` is honoured. The same
seed gives the same run, so a failing scenario can be replayed exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any, Protocol

from bitdust.dht.protocol import BootstrapDone, BootstrapFailed, DHTNode, Event
from bitdust.dht.records import Ed25519Signer
from bitdust.dht.routing import distance
from bitdust.dht.settings import DHTSettings
from bitdust.dht.store import RecordStore
from bitdust.dht.wire import Contact

Addr = tuple[str, int]
WALL_EPOCH = 1_750_000_000.0

SIM_SETTINGS = DHTSettings(rpc_timeout=2.0, refresh_interval=3600.0, maintenance_interval=60.0)


class Endpoint(Protocol):
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]: ...
    def next_event(self) -> Event | None: ...


def sim_addr(i: int) -> Addr:
    return (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 14441)


class Simulation:
    """Nodes, a fake clock and a lossy, delayed network between them."""

    def __init__(
        self,
        seed: int = 1,
        settings: DHTSettings = SIM_SETTINGS,
        latency: tuple[float, float] = (0.005, 0.05),
        loss: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.settings = settings
        self.latency = latency
        self.loss = loss
        self.now = 0.0
        self.endpoints: dict[Addr, Endpoint] = {}
        self.nodes: dict[Addr, DHTNode] = {}
        self.events: dict[tuple[Addr, int], Event] = {}
        self.sent = 0
        self._queue: list[tuple[float, int, Addr | None, bytes, Addr]] = []
        self._timers: dict[Addr, float | None] = {}
        self._seq = 0

    def new_node(self, addr: Addr | None = None, settings: DHTSettings | None = None) -> DHTNode:
        settings = settings or self.settings
        addr = addr or sim_addr(len(self.endpoints) + 1)
        node = DHTNode(
            self.rng.randbytes(20),
            settings,
            RecordStore(settings),
            Ed25519Signer.generate(),
            now=self.now,
            wall_offset=WALL_EPOCH,
            rng=random.Random(self.rng.random()),
        )
        self.attach(node, addr)
        return node

    def attach(self, endpoint: Endpoint, addr: Addr) -> None:
        self.endpoints[addr] = endpoint
        if isinstance(endpoint, DHTNode):
            self.nodes[addr] = endpoint
        self._timers[addr] = None
        self._flush(addr)

    def addr_of(self, node: DHTNode) -> Addr:
        return next(a for a, n in self.nodes.items() if n is node)

    def kill(self, addr: Addr) -> None:
        """The node vanishes: datagrams to it are lost, its timers never fire."""
        self.endpoints.pop(addr, None)
        self.nodes.pop(addr, None)
        self._timers.pop(addr, None)

    def _push(self, when: float, src: Addr | None, data: bytes, dst: Addr) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, src, data, dst))

    def _flush(self, addr: Addr) -> None:
        endpoint = self.endpoints.get(addr)
        if endpoint is None:
            return
        for data, dst in endpoint.datagrams_to_send():
            self.sent += 1
            if self.loss and self.rng.random() < self.loss:
                continue
            self._push(self.now + self.rng.uniform(*self.latency), addr, data, dst)
        while (event := endpoint.next_event()) is not None:
            self.events[(addr, event.op_id)] = event
        timer = endpoint.get_timer()
        if timer is not None and timer != self._timers.get(addr):
            self._timers[addr] = timer
            self._push(max(timer, self.now), None, b"", addr)

    def step(self) -> bool:
        """Process one queued delivery or timer; False when nothing is left."""
        if not self._queue:
            return False
        when, _, src, data, dst = heapq.heappop(self._queue)
        self.now = max(self.now, when)
        endpoint = self.endpoints.get(dst)
        if endpoint is None:
            return True
        if src is None:
            if self._timers.get(dst) != when:
                return True
            self._timers[dst] = None
            endpoint.handle_timer(self.now)
        else:
            endpoint.receive_datagram(data, src, self.now)
        self._flush(dst)
        return True

    def run_until(self, done: Callable[[], bool], max_time: float = 600.0) -> None:
        deadline = self.now + max_time
        while not done():
            if not self._queue or self._queue[0][0] > deadline:
                raise TimeoutError(f"simulation reached t={self.now:.1f} without finishing")
            self.step()

    def call(self, node: DHTNode, start: Callable[[float], int], max_time: float = 600.0) -> Any:
        """Start an operation on ``node`` and run the network until its event arrives."""
        addr = self.addr_of(node)
        op_id = start(self.now)
        self._flush(addr)
        self.run_until(lambda: (addr, op_id) in self.events, max_time)
        return self.events.pop((addr, op_id))

    def join(self, node: DHTNode, seeds: list[Addr]) -> bool:
        event = self.call(node, lambda now: node.bootstrap(seeds, now))
        assert isinstance(event, BootstrapDone | BootstrapFailed)
        return isinstance(event, BootstrapDone)

    def build(self, count: int) -> list[DHTNode]:
        """``count`` nodes, each joining through the first one, one after another."""
        seed = self.new_node()
        seed_addr = self.addr_of(seed)
        nodes = [seed]
        for _ in range(count - 1):
            node = self.new_node()
            if not self.join(node, [seed_addr]):
                raise AssertionError("a node failed to join through a live seed")
            nodes.append(node)
        return nodes

    def true_closest(self, target: bytes, count: int) -> list[bytes]:
        """Ground truth: the ``count`` live node ids nearest to ``target``."""
        ids = [n.node_id for n in self.nodes.values()]
        return sorted(ids, key=lambda i: distance(i, target))[:count]


def ids(contacts: tuple[Contact, ...] | list[Contact]) -> list[bytes]:
    return [c.node_id for c in contacts]
