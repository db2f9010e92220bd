"""The Kademlia node as a sans-IO state machine (shaped like aioquic's connection).

Inputs are the user's calls (``join``, ``bootstrap``, ``find_node``, ``get_value``, ``set_value``,
``ping``),
``receive_datagram(data, addr, now)`` and ``handle_timer(now)``; outputs are
``datagrams_to_send()``, ``get_timer()`` and ``next_event()``. ``now`` is a monotonic clock passed
in by the caller; wall-clock time, which records carry between nodes, is ``now + wall_offset`` and
the shell keeps ``wall_offset`` current. The core never sleeps, opens sockets or reads a clock.

Trust: a reply counts only if its request id *and* the address the request went to match a pending
RPC; the routing table only learns peers that spoke to us directly; records are verified before
they are stored and before a lookup reports them. Anything malformed or unexpected is dropped and
counted in ``counters``; every queue and table is bounded.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import ipaddress
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import msgpack

from bitdust.dht.events import (
    BootstrapDone,
    BootstrapFailed,
    Event,
    JoinRetry,
    LookupDone,
    PingDone,
    StoreDone,
    ValueFound,
)
from bitdust.dht.joining import JoinPolicy, JoinState
from bitdust.dht.lookup import Lookup, LookupMode
from bitdust.dht.persistence import Persistence
from bitdust.dht.ratelimit import RateLimiter, network_of
from bitdust.dht.records import MAX_NAME, MAX_VALUE, Record, RecordChecker, owned_key, sign_record
from bitdust.dht.refusals import RecordRefused, Refusal
from bitdust.dht.routing import PingOldest, RoutingTable, id_int
from bitdust.dht.schemes import Signer, Verifier, verify_cost
from bitdust.dht.settings import DHTSettings
from bitdust.dht.store import RecordStore
from bitdust.dht.tokens import AMPLIFICATION, AddressTokens
from bitdust.dht.wire import (
    ID_SIZE,
    MAX_DATAGRAM,
    MAX_RECORDS,
    REQUESTS,
    Contact,
    MalformedMessage,
    Message,
    MsgType,
    decode,
    encode,
)

Addr = tuple[str, int]

MAX_SEEDS = 64
MAX_PEER_TOKENS = 4096

_EXPECTED: dict[MsgType, frozenset[MsgType]] = {
    MsgType.PING: frozenset({MsgType.PONG, MsgType.ERROR}),
    MsgType.FIND_NODE: frozenset({MsgType.NODES, MsgType.ERROR}),
    MsgType.FIND_VALUE: frozenset({MsgType.VALUES, MsgType.NODES, MsgType.ERROR}),
    MsgType.STORE: frozenset({MsgType.STORED, MsgType.ERROR}),
}

COUNTERS = (
    "lookups",
    "datagrams_in",
    "datagrams_out",
    "malformed",
    "unmatched",
    "from_self",
    "rate_limited",
    "timeouts",
    "pending_full",
    "bad_contacts",
    "invalid_signature",
    "verified",
    "verify_busy",
    "bad_record",
    "store_refused",
    "stored",
    "expired",
    "evicted",
    "cut_replies",
    "internal_errors",
)


class DHTBusy(RuntimeError):
    """Too many operations are running; the caller may retry later."""


# Operations -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Bootstrap:
    """One join attempt: ask the seeds for our neighbourhood, then look ourselves up."""

    op_id: int
    waiting: int
    report: bool = True
    join: bool = False  # an attempt of ``join``: its outcome drives the retry policy
    answered: bool = False


@dataclass(slots=True)
class _Store:
    """The STORE fan-out that follows a STORE lookup: counts the answers of the k nearest."""

    op_id: int
    key: bytes
    report: bool
    awaited: int
    stored: int = 0


@dataclass(slots=True)
class _Ping:
    op_id: int
    report: bool
    evict: PingOldest | None = None


_Op = Lookup | _Bootstrap | _Store | _Ping


@dataclass(slots=True)
class _Pending:
    rid: bytes
    addr: Addr
    node_id: bytes | None
    kind: MsgType
    op: _Op | None
    deadline: float
    retried: bool = False  # asked again with the address token after a cut reply


# The node -------------------------------------------------------------------------------------


class DHTNode:
    """One Kademlia node; see the module docstring for the I/O contract."""

    def __init__(
        self,
        node_id: bytes,
        settings: DHTSettings,
        persistence: Persistence,
        signer: Signer,
        *,
        verifiers: Mapping[str, Verifier],
        now: float,
        wall_offset: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if len(node_id) != ID_SIZE:
            raise ValueError(f"node id: expected {ID_SIZE} bytes")
        self.node_id = node_id
        self.settings = settings
        self.persistence = persistence
        self.signer = signer
        self.checker = RecordChecker(verifiers, settings.max_age, settings.clock_skew)
        self.wall_offset = wall_offset
        self.rng = rng if rng is not None else random.SystemRandom()
        self.table = RoutingTable(
            node_id,
            settings.k,
            now,
            settings.replacement_cache,
            settings.max_failures,
            settings.ping_after,
        )
        for contact in persistence.load_contacts():
            self.table.add(contact, now)
        self.store = RecordStore(settings, persistence, node_id)
        self.store.load(self.checker, self.wall(now), now)
        self.joining = JoinPolicy(settings.join_retry_initial, settings.join_retry_max)
        self.limiter = RateLimiter(
            settings.requests_per_second_per_ip, settings.request_burst_per_ip
        )
        self.verify_budget = RateLimiter(
            settings.verify_seconds_per_network, settings.verify_burst_per_network
        )
        self.verify_total = RateLimiter(settings.verify_seconds_total, settings.verify_burst_total)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._ops: dict[int, _Op] = {}
        self._next_op = 1
        self._evicting: set[bytes] = set()
        self._republished: dict[tuple[bytes, bytes], float] = {}
        self._next_maintenance = now + settings.maintenance_interval
        self._rotation = 0  # where the next VALUES reply starts among a key's shared records
        self.tokens = AddressTokens(now)
        # NODES of k IPv6 contacts is at most ~64 + 70k bytes; an unpadded lookup is ~80.
        self._lookup_padding = max(0, -(-(64 + 70 * settings.k) // AMPLIFICATION) - 80)
        self._peer_tokens: dict[str, bytes] = {}  # the token each peer address gave us

    # Outputs ----------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        """When ``handle_timer`` must next run: an RPC deadline, a join retry or maintenance."""
        when = self._next_maintenance
        if self.joining.retry_at is not None:
            when = min(when, self.joining.retry_at)
        while self._deadlines:
            deadline, rid = self._deadlines[0]
            pending = self._pending.get(rid)
            if pending is not None and pending.deadline == deadline:
                return min(deadline, when)
            heapq.heappop(self._deadlines)
        return when

    def wall(self, now: float) -> float:
        """Unix time at monotonic ``now``: the one clock records are signed and checked with."""
        return now + self.wall_offset

    @property
    def joined(self) -> bool:
        return self.joining.state in (JoinState.JOINED, JoinState.GENESIS)

    def stats(self) -> dict[str, object]:
        """Figures for the API: ``contacts`` is the routing-table size."""
        return {
            "node_id": self.node_id.hex(),
            "contacts": len(self.table),
            "buckets": len(self.table.buckets),
            "items": len(self.store),
            "published": len(self.store.published()),
            "bytes": self.store.total_bytes,
            "pending": len(self._pending),
            "operations": len(self._ops),
            "counters": dict(self.counters),
        }

    def save(self) -> None:
        """Hand the routing table to the persistence (records go to it as they change)."""
        self.persistence.save_contacts(self.table)

    # User calls -------------------------------------------------------------------------------

    def join(self, addrs: list[Addr], now: float) -> None:
        """Join through known nodes, retrying with capped exponential back-off until one
        answers (``joining``); an empty list makes this node the genesis of a new network.
        ``JoinRetry`` events say when an attempt failed, ``BootstrapDone`` when it joined."""
        self.joining.start(addrs[:MAX_SEEDS])
        if addrs:
            self._bootstrap(self.joining.seeds, now, report=False, join=True)

    def bootstrap(self, addrs: list[Addr], now: float) -> int:
        """One join attempt through known nodes: ask each for our own neighbourhood, then look
        ourselves up. Ends with ``BootstrapDone`` or ``BootstrapFailed``."""
        return self._bootstrap(addrs, now, report=True, join=False)

    def find_node(self, target: bytes, now: float) -> int:
        self._check_room()
        return self._lookup(target, LookupMode.NODE, now)

    def get_value(self, key: bytes, now: float) -> int:
        self._check_room()
        return self._lookup(key, LookupMode.VALUE, now)

    def set_value(self, record: Record, now: float) -> int:
        """Publish a signed record to the k closest nodes, and republish it until it expires."""
        refusal = self.checker.check(record, self.wall(now))
        if refusal is not None:
            raise RecordRefused(refusal)
        self._check_room()
        self.store.publish(record)
        self._republished[(record.key, record.public_key)] = now
        return self._lookup(record.key, LookupMode.STORE, now, record=record)

    def ping(self, addr: Addr, now: float) -> int:
        op = _Ping(self._new_op_id(), report=True)
        self._ops[op.op_id] = op
        if not self._request(MsgType.PING, addr, None, op, now):
            self._end(op, PingDone(op.op_id, None))
        return op.op_id

    def sign(
        self,
        key: bytes,
        value: bytes,
        now: float,
        age: int | None = None,
        owner: str | None = None,
        signer: Signer | None = None,
        name: bytes | None = None,
    ) -> Record:
        """A record valid from ``now`` (the core's clock) for ``age`` seconds, signed by
        ``signer`` (default: this node's key); RecordRefused when no node would accept it.
        With ``name``, the record lives under the signer's owned key of that name and ``key``
        is ignored."""
        s = self.settings
        age = s.default_age if age is None else age
        if age <= 0:
            raise RecordRefused(Refusal.NO_LIFETIME, f"age {age}")
        if age > s.max_age:
            raise RecordRefused(Refusal.LIFETIME_TOO_LONG, f"age {age} > {s.max_age} seconds")
        if len(value) > MAX_VALUE:
            raise RecordRefused(Refusal.VALUE_TOO_LARGE, f"{len(value)} bytes > {MAX_VALUE} bytes")
        signer = signer or self.signer
        if name is not None:
            if not 0 < len(name) <= MAX_NAME:
                raise RecordRefused(Refusal.BAD_KEY, f"an owned key's name is 1..{MAX_NAME} bytes")
            key = owned_key(signer.public_key, name)
        return sign_record(signer, key, value, int(self.wall(now)), age, owner, name)

    # Inputs -----------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Feed one datagram from ``addr``; bad input is dropped and counted, never raised."""
        self.counters["datagrams_in"] += 1
        try:
            msg = decode(data)
        except MalformedMessage:
            self.counters["malformed"] += 1
            return
        if msg.sender == self.node_id:
            self.counters["from_self"] += 1
            return
        if msg.kind in REQUESTS:
            if self.limiter.allow(addr[0], now):
                self._serve(msg, addr, now, len(data))
            else:
                self.counters["rate_limited"] += 1
            return
        pending = self._pending.get(msg.rid)
        if (
            pending is None
            or pending.addr != addr
            or msg.kind not in _EXPECTED[pending.kind]
            or (pending.node_id is not None and pending.node_id != msg.sender)
        ):
            self.counters["unmatched"] += 1
            return
        del self._pending[msg.rid]
        if msg.token is not None:
            self._remember_token(addr[0], msg.token)
        self._heard(Contact(msg.sender, addr[0], addr[1]), now)
        self._on_reply(pending, msg, now)

    def handle_timer(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, rid = heapq.heappop(self._deadlines)
            pending = self._pending.get(rid)
            if pending is not None and pending.deadline == deadline:
                del self._pending[rid]
                self.counters["timeouts"] += 1
                if pending.node_id is not None:
                    self.table.fail(pending.node_id)
                self._on_timeout(pending, now)
        if self.joining.retry_due(now):
            self._bootstrap(self.joining.seeds, now, report=False, join=True)
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.settings.maintenance_interval
            self._maintain(now)

    # Serving requests -------------------------------------------------------------------------

    def _serve(self, msg: Message, addr: Addr, now: float, size: int) -> None:
        self._heard(Contact(msg.sender, addr[0], addr[1]), now)
        reply: Message
        if msg.kind is MsgType.PING:
            reply = Message(MsgType.PONG, msg.rid, self.node_id)
        elif msg.kind is MsgType.FIND_NODE:
            reply = self._nodes_reply(msg)
        elif msg.kind is MsgType.FIND_VALUE:
            assert msg.target is not None
            found = self.store.get(msg.target, self.wall(now))
            reply = self._values_reply(msg, found) if found else self._nodes_reply(msg)
        else:
            refusal = self._accept_store(msg.records[0], addr[0], now)
            reason = refusal.value if refusal is not None else ""
            reply = Message(MsgType.STORED, msg.rid, self.node_id, ok=not reason, reason=reason)
        reply = dataclasses.replace(reply, token=self.tokens.token(addr[0], now))
        proven = msg.token is not None and self.tokens.valid(addr[0], msg.token, now)
        self._emit(encode(reply) if proven else self._within(reply, AMPLIFICATION * size), addr)

    def _within(self, reply: Message, limit: int) -> bytes:
        """``reply`` encoded in at most ``limit`` bytes: an address that has not shown it
        receives our datagrams gets no more than a few times what it sent (no amplification).
        Contacts or records are cut from the end and the reply says so (``truncated``)."""
        data = encode(reply)
        while len(data) > limit and (reply.contacts or reply.records):
            reply = dataclasses.replace(
                reply, contacts=reply.contacts[:-1], records=reply.records[:-1], truncated=True
            )
            data = encode(reply)
        if reply.truncated:
            self.counters["cut_replies"] += 1
        return data

    def _remember_token(self, host: str, token: bytes) -> None:
        """Tokens are per IP address; the oldest goes first when the table is full."""
        if host not in self._peer_tokens and len(self._peer_tokens) >= MAX_PEER_TOKENS:
            del self._peer_tokens[next(iter(self._peer_tokens))]
        self._peer_tokens[host] = token

    def _nodes_reply(self, msg: Message) -> Message:
        assert msg.target is not None
        nearest = self.table.closest(msg.target, self.settings.k, exclude=(msg.sender,))
        return Message(MsgType.NODES, msg.rid, self.node_id, contacts=tuple(nearest))

    def _values_reply(self, msg: Message, found: list[Record]) -> Message:
        """As many records as fit one datagram, chosen fairly, never by the senders: the key's
        owner's record first (an owned key's named record), then the others in a rotation that
        moves on with every reply, skipping any that does not fit."""
        owned = [r for r in found if r.name is not None]
        shared = sorted((r for r in found if r.name is None), key=lambda r: r.public_key)
        if shared:
            start = self._rotation % len(shared)
            shared = shared[start:] + shared[:start]
            self._rotation += 1
        budget = MAX_DATAGRAM - 128
        chosen: list[Record] = []
        for record in owned + shared:
            size = len(msgpack.packb(record.to_map(), use_bin_type=True))
            if size <= budget and len(chosen) < MAX_RECORDS:
                chosen.append(record)
                budget -= size
        return Message(MsgType.VALUES, msg.rid, self.node_id, records=tuple(chosen))

    def _accept_store(self, record: Record, host: str, now: float) -> Refusal | None:
        refusal = self.checker.check_fields(record, self.wall(now))
        if refusal is None and not self.store.holds(record):
            refusal = self._verify_within_budget(record, host, now)
        if refusal is None:
            refusal = self.store.put(record, host, now)
        self.counters["stored" if refusal is None else "store_refused"] += 1
        return refusal

    def _verify_within_budget(self, record: Record, host: str, now: float) -> Refusal | None:
        """Check the signature if the sender's network, and the node, have CPU time left for it.

        The budget is in estimated CPU seconds, not in datagrams: a costly key spends it faster.
        Past it the STORE is refused unchecked, and the node keeps serving everyone else.
        """
        cost = verify_cost(record.scheme, record.public_key)
        if not (
            self.verify_budget.allow(network_of(host), now, cost)
            and self.verify_total.allow("", now, cost)
        ):
            self.counters["verify_busy"] += 1
            return Refusal.BUSY
        self.counters["verified"] += 1
        if not self.checker.verify_signature(record):
            self.counters["invalid_signature"] += 1
            return Refusal.INVALID_SIGNATURE
        return None

    # Sending requests -------------------------------------------------------------------------

    def _emit(self, data: bytes, addr: Addr) -> None:
        self._out.append((data, addr))
        self.counters["datagrams_out"] += 1

    def _request(
        self,
        kind: MsgType,
        addr: Addr,
        node_id: bytes | None,
        op: _Op | None,
        now: float,
        *,
        target: bytes | None = None,
        record: Record | None = None,
        retried: bool = False,
    ) -> bool:
        if len(self._pending) >= self.settings.max_pending:
            self.counters["pending_full"] += 1
            return False
        rid = self.rng.randbytes(ID_SIZE)
        deadline = now + self.settings.rpc_timeout
        self._pending[rid] = _Pending(rid, addr, node_id, kind, op, deadline, retried)
        heapq.heappush(self._deadlines, (deadline, rid))
        records = (record,) if record is not None else ()
        token = self._peer_tokens.get(addr[0])
        message = Message(kind, rid, self.node_id, target=target, records=records, token=token)
        if token is None and kind in (MsgType.FIND_NODE, MsgType.FIND_VALUE):
            # No token for this address yet: pad the request so that a full NODES reply is
            # within the amplification limit (a VALUES reply may still be cut, then re-asked).
            message = dataclasses.replace(message, padding=self._lookup_padding)
        self._emit(encode(message), addr)
        return True

    def _heard(self, contact: Contact, now: float) -> None:
        action = self.table.add(contact, now)
        if action is None or action.oldest.node_id in self._evicting:
            return
        op = _Ping(self._new_op_id(), report=False, evict=action)
        oldest = action.oldest
        if self._request(MsgType.PING, oldest.addr, oldest.node_id, op, now):
            self._ops[op.op_id] = op
            self._evicting.add(oldest.node_id)

    # Replies and timeouts ---------------------------------------------------------------------

    def _on_reply(self, pending: _Pending, msg: Message, now: float) -> None:
        op = pending.op
        if isinstance(op, _Ping):
            if op.evict is not None:
                self._evicting.discard(op.evict.oldest.node_id)
            contact = Contact(msg.sender, pending.addr[0], pending.addr[1])
            self._end(op, PingDone(op.op_id, contact))
        elif isinstance(op, _Bootstrap):
            op.waiting -= 1
            if not op.answered and msg.kind is MsgType.NODES:
                op.answered = True
                self._lookup(self.node_id, LookupMode.NODE, now, report=False, bootstrap=op)
            elif op.waiting == 0 and not op.answered:
                self._bootstrap_ended(op, None, now)
        elif isinstance(op, _Store):
            self._store_answered(op, ok=msg.kind is MsgType.STORED and msg.ok)
        elif isinstance(op, Lookup):
            if op.mode is LookupMode.VALUE:
                for record in msg.records:
                    self._collect(op, record, now)
            if msg.truncated and not pending.retried:
                # Cut to the amplification limit: ask once more, now with this peer's token.
                again = (pending.kind, pending.addr, pending.node_id, op, now)
                if self._request(*again, target=op.target, retried=True):
                    return
                op.failed(msg.sender)
            elif msg.kind is MsgType.ERROR:
                op.failed(msg.sender)
            else:
                op.answered(msg.sender, self._usable_contacts(msg.contacts, pending.addr))
            self._advance(op, now)

    def _on_timeout(self, pending: _Pending, now: float) -> None:
        op = pending.op
        if isinstance(op, _Ping):
            if op.evict is not None:
                self._evicting.discard(op.evict.oldest.node_id)
                self.table.remove(op.evict.oldest.node_id)
            self._end(op, PingDone(op.op_id, None))
        elif isinstance(op, _Bootstrap):
            op.waiting -= 1
            if op.waiting == 0 and not op.answered:
                self._bootstrap_ended(op, None, now)
        elif isinstance(op, _Store):
            self._store_answered(op, ok=False)
        elif isinstance(op, Lookup):
            op.failed(pending.node_id or b"")
            self._advance(op, now)

    def _end(self, op: _Op, event: Event) -> None:
        """Finish ``op`` once; its event reaches the user only for operations the user started."""
        if self._ops.pop(op.op_id, None) is not None and op.report:
            self._events.append(event)

    # Joining ----------------------------------------------------------------------------------

    def _bootstrap(self, addrs: list[Addr], now: float, *, report: bool, join: bool) -> int:
        op = _Bootstrap(self._new_op_id(), 0, report=report, join=join)
        self._ops[op.op_id] = op
        for addr in addrs[:MAX_SEEDS]:
            if self._request(MsgType.FIND_NODE, addr, None, op, now, target=self.node_id):
                op.waiting += 1
        if op.waiting == 0:
            self._bootstrap_ended(op, None, now)
        return op.op_id

    def _bootstrap_ended(
        self, op: _Bootstrap, nodes: tuple[Contact, ...] | None, now: float
    ) -> None:
        """A join attempt ended: joined when the self-lookup found somebody (``nodes``)."""
        if self._ops.pop(op.op_id, None) is None:
            return
        ok = bool(nodes)
        if ok:
            self._refresh_far_buckets(now)
        if op.report:
            self._events.append(
                BootstrapDone(op.op_id, len(self.table)) if ok else BootstrapFailed(op.op_id)
            )
        if not op.join:
            return
        if ok:
            self.joining.succeeded()
            self._events.append(BootstrapDone(op.op_id, len(self.table)))
        else:
            delay = self.joining.attempt_failed(now)
            self._events.append(JoinRetry(op.op_id, self.joining.failures, delay))

    def _refresh_far_buckets(self, now: float) -> None:
        """After joining, look up an id in every bucket but our own (paper §2.3): otherwise far
        buckets stay empty until somebody far away happens to contact us."""
        own = id_int(self.node_id)
        room = self.settings.max_operations // 2
        for bucket in list(self.table.buckets):
            if not bucket.covers(own) and len(self._ops) < room:
                self._lookup(bucket.random_id(self.rng), LookupMode.NODE, now, report=False)

    # Lookups ----------------------------------------------------------------------------------

    def _new_op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _check_room(self) -> None:
        """User calls are refused while the node runs its maximum of operations."""
        if len(self._ops) >= self.settings.max_operations:
            raise DHTBusy(f"{len(self._ops)} DHT operations are already running")

    def _lookup(
        self,
        target: bytes,
        mode: LookupMode,
        now: float,
        *,
        report: bool = True,
        record: Record | None = None,
        bootstrap: _Bootstrap | None = None,
    ) -> int:
        if len(target) != ID_SIZE:
            raise ValueError(f"target: expected {ID_SIZE} bytes")
        s = self.settings
        op = Lookup(self._new_op_id(), target, mode, s.k, s.alpha, report, record)
        op.bootstrap_op = bootstrap.op_id if bootstrap is not None else None
        self._ops[op.op_id] = op
        self.counters["lookups"] += 1
        self.table.touch(target, now)
        op.add_seeds(self.table.closest(target, s.k))
        self._advance(op, now)
        return op.op_id

    def _advance(self, op: Lookup, now: float) -> None:
        """Send the queries the lookup asks for; finish it when it has nobody left to ask."""
        kind = MsgType.FIND_VALUE if op.mode is LookupMode.VALUE else MsgType.FIND_NODE
        while queries := op.next_queries():
            for contact in queries:
                if not self._request(
                    kind, contact.addr, contact.node_id, op, now, target=op.target
                ):
                    op.failed(contact.node_id)
        if op.finished:
            self._lookup_done(op, now)

    def _usable_contacts(self, contacts: tuple[Contact, ...], addr: Addr) -> tuple[Contact, ...]:
        """Contacts worth asking: not us, and no loopback address from a peer that is not on
        loopback itself (that would aim our traffic at our own host)."""
        from_loopback = _is_loopback(addr[0])
        out = []
        for contact in contacts:
            if contact.node_id == self.node_id:
                continue
            if _is_loopback(contact.host) and not from_loopback:
                self.counters["bad_contacts"] += 1
                continue
            out.append(contact)
        return tuple(out)

    def _collect(self, op: Lookup, record: Record, now: float) -> None:
        """Keep a record a peer returned only if it verifies and belongs to the looked-up key."""
        if record.key != op.target:
            self.counters["bad_record"] += 1
            return
        refusal = self.checker.check(record, self.wall(now))
        if refusal is not None:
            bad = "invalid_signature" if refusal is Refusal.INVALID_SIGNATURE else "bad_record"
            self.counters[bad] += 1
            return
        op.offer(record, self.settings.max_records_per_key)

    def _lookup_done(self, op: Lookup, now: float) -> None:
        if op.op_id not in self._ops:
            return
        nodes, hops = op.result()
        if op.mode is LookupMode.STORE:
            assert op.record is not None
            del self._ops[op.op_id]
            store = _Store(op.op_id, op.target, op.report, 0)
            self._ops[op.op_id] = store
            for contact in nodes:
                if self._request(
                    MsgType.STORE, contact.addr, contact.node_id, store, now, record=op.record
                ):
                    store.awaited += 1
            if store.awaited == 0:
                self._end(store, StoreDone(op.op_id, op.target, 0))
            return
        if op.mode is LookupMode.VALUE:
            for record in self.store.get(op.target, self.wall(now)):
                self._collect(op, record, now)
            found = sorted(op.records.values(), key=lambda r: r.created, reverse=True)
            self._end(op, ValueFound(op.op_id, op.target, tuple(found), hops, op.queried))
            return
        self._end(op, LookupDone(op.op_id, op.target, nodes, hops, op.queried))
        if op.bootstrap_op is not None:
            boot = self._ops.get(op.bootstrap_op)
            if isinstance(boot, _Bootstrap):
                # the seed answered once, then nobody did: not joined
                self._bootstrap_ended(boot, nodes, now)

    def _store_answered(self, op: _Store, ok: bool) -> None:
        op.awaited -= 1
        op.stored += int(ok)
        if op.awaited == 0:
            self._end(op, StoreDone(op.op_id, op.key, op.stored))

    # Maintenance ------------------------------------------------------------------------------

    def _maintain(self, now: float) -> None:
        """Expire records, forget refilled rate buckets, refresh idle buckets, republish, and
        persist the routing table."""
        s = self.settings
        self.counters["expired"] += self.store.expire(self.wall(now))
        self.counters["evicted"] = self.store.evicted
        for limiter in (self.limiter, self.verify_budget, self.verify_total):
            limiter.forget_idle(now)
        room = s.max_operations // 2
        for bucket in self.table.stale_buckets(now, s.refresh_interval):
            if len(self._ops) >= room:
                break
            self._lookup(bucket.random_id(self.rng), LookupMode.NODE, now, report=False)
        jobs = [
            (h.record, h) for h in self.store.held() if now - h.refreshed >= s.republish_interval
        ]
        for record in self.store.published():
            ident = (record.key, record.public_key)
            if now - self._republished.get(ident, float("-inf")) >= s.republish_interval:
                jobs.append((record, None))
        for record, held in jobs:
            if len(self._ops) >= room:
                break
            if held is not None:
                held.refreshed = now
            else:
                self._republished[(record.key, record.public_key)] = now
            self._lookup(record.key, LookupMode.STORE, now, report=False, record=record)
        self.save()


@functools.lru_cache(maxsize=4096)
def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
