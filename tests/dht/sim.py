"""A deterministic in-memory network driving real ``DHTNode`` cores.

One seeded RNG, one fake clock and one event queue stand in for sockets and time: datagrams are
delivered after a random latency (or lost), and each node's ``get_timer`` is honoured. The same
seed gives the same run, so a failing scenario can be replayed exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from bitdust.dht.events import BootstrapDone, BootstrapFailed, Event
from bitdust.dht.persistence import MemoryPersistence
from bitdust.dht.protocol import DHTNode
from bitdust.dht.records import Record
from bitdust.dht.routing import distance
from bitdust.dht.schemes import STANDARD_VERIFIERS, Ed25519Signer
from bitdust.dht.settings import DHTSettings
from bitdust.dht.wire import Contact, MalformedMessage, Message, MsgType, decode, encode

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
            MemoryPersistence(),
            Ed25519Signer.generate(),
            verifiers=STANDARD_VERIFIERS,
            now=self.now,
            wall_offset=WALL_EPOCH,
            rng=self.rng,  # one seeded stream for the whole run keeps it deterministic
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

    def settle(self, seconds: float) -> None:
        """Let background work (join refreshes, eviction pings) run for ``seconds``."""
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            self.step()
        self.now = end

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
            # The core's own join policy retries an attempt whose datagrams were lost.
            node.join([seed_addr], self.now)
            self._flush(self.addr_of(node))
            self.run_until(lambda n=node: n.joined)
            nodes.append(node)
        return nodes

    def true_closest(self, target: bytes, count: int) -> list[bytes]:
        """Ground truth: the ``count`` live node ids nearest to ``target``."""
        ids = [n.node_id for n in self.nodes.values()]
        return sorted(ids, key=lambda i: distance(i, target))[:count]


def ids(contacts: tuple[Contact, ...] | list[Contact]) -> list[bytes]:
    return [c.node_id for c in contacts]


class Liar:
    """A node that joins honestly, then lies to everyone who asks it anything.

    FIND_VALUE gets forged records (a tampered value, a record signed for another key, a made-up
    signature); FIND_NODE gets either garbage bytes or invented contacts right next to the target
    at addresses where nobody listens. Every ``flood_interval`` it also sprays junk at honest nodes:
    random bytes, pings with invented ids and stores with bad signatures.
    """

    def __init__(self, sim: Simulation, inner: DHTNode, flood: int, flood_interval: float) -> None:
        self.sim = sim
        self.inner = inner
        self.rng = random.Random(sim.rng.random())
        self.flood = flood
        self.flood_interval = flood_interval
        self.next_flood = sim.now + flood_interval
        self._out: list[tuple[bytes, Addr]] = []

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            msg = decode(data)
        except MalformedMessage:
            return
        if msg.kind is MsgType.FIND_VALUE and msg.target is not None:
            self._reply(
                Message(
                    MsgType.VALUES,
                    msg.rid,
                    self.inner.node_id,
                    records=self._forge(msg.target, now),
                ),
                addr,
            )
        elif msg.kind is MsgType.FIND_NODE and msg.target is not None:
            if self.rng.random() < 0.5:
                self._out.append((self.rng.randbytes(self.rng.randrange(1, 300)), addr))
            else:
                self._reply(
                    Message(
                        MsgType.NODES, msg.rid, self.inner.node_id, contacts=self._fake(msg.target)
                    ),
                    addr,
                )
        else:
            self.inner.receive_datagram(data, addr, now)

    def _reply(self, msg: Message, addr: Addr) -> None:
        self._out.append((encode(msg), addr))

    def _forge(self, key: bytes, now: float) -> tuple[Record, ...]:
        honest = self.inner.sign(key, b"genuine-looking", now)
        elsewhere = self.inner.sign(self.rng.randbytes(20), b"wrong key", now)
        return (
            replace(honest, value=b"tampered"),
            replace(elsewhere, key=key),
            elsewhere,
            replace(honest, public_key=self.rng.randbytes(32), signature=self.rng.randbytes(64)),
        )

    def _fake(self, target: bytes) -> tuple[Contact, ...]:
        out = []
        for _ in range(self.inner.settings.k):
            node_id = target[:17] + self.rng.randbytes(3)
            host = f"10.250.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
            out.append(Contact(node_id, host, 14441))
        return tuple(out)

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)
        if now >= self.next_flood:
            self.next_flood = now + self.flood_interval
            targets = list(self.sim.nodes)
            junk_record = replace(
                self.inner.sign(self.rng.randbytes(20), b"junk", now), signature=b"\x00" * 64
            )
            for _ in range(self.flood):
                dst = self.rng.choice(targets)
                roll = self.rng.random()
                if roll < 0.3:
                    data = self.rng.randbytes(self.rng.randrange(1, 200))
                elif roll < 0.7:
                    data = encode(
                        Message(MsgType.PING, self.rng.randbytes(20), self.rng.randbytes(20))
                    )
                else:
                    data = encode(
                        Message(
                            MsgType.STORE,
                            self.rng.randbytes(20),
                            self.inner.node_id,
                            records=(junk_record,),
                        )
                    )
                self._out.append((data, dst))

    def get_timer(self) -> float | None:
        return min(self.inner.get_timer(), self.next_flood)

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self.inner.datagrams_to_send() + self._out, []
        return out

    def next_event(self) -> Event | None:
        return self.inner.next_event()


def add_liar(sim: Simulation, seed: Addr, flood: int = 200, flood_interval: float = 1.0) -> Liar:
    """Join an honest node, then swap it for a ``Liar`` wrapping it (it leaves the ground truth)."""
    inner = sim.new_node()
    addr = sim.addr_of(inner)
    if not sim.join(inner, [seed]):
        raise AssertionError("the liar failed to join")
    liar = Liar(sim, inner, flood, flood_interval)
    del sim.nodes[addr]
    sim.attach(liar, addr)
    return liar
