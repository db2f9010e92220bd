"""The DHT datagram format: one versioned msgpack map per UDP datagram.

Every datagram is outside input. ``decode`` bounds the size first, then checks every field's type,
length and count, and reports any problem as one ``MalformedMessage`` so the protocol can drop and
count it. A sender's node id is a claim; its address is never read from the message but from the
datagram. Nothing here signs or verifies records: that is ``records``' job.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from bitdust.dht.records import MAX_VALUE, MalformedRecord, Record, record_from_map

# 2: records may carry a name ("n"), which puts them under their signer's owned key.
# 3: address tokens ("y") in every message, "tr" on replies cut to the amplification limit, and
#    "pad" (zero bytes) on lookups to an address we have no token for, so a full NODES reply fits.
VERSION = 3
TOKEN_SIZE = 8
MAX_DATAGRAM = 8192
ID_SIZE = 20
MAX_CONTACTS = 32
MAX_RECORDS = 16
MAX_REASON = 200


class MalformedMessage(ValueError):
    """A datagram that is not a well-formed message of this protocol version."""


class MsgType(IntEnum):
    PING = 1
    PONG = 2
    FIND_NODE = 3
    NODES = 4
    FIND_VALUE = 5
    VALUES = 6
    STORE = 7
    STORED = 8
    ERROR = 9


REQUESTS = frozenset({MsgType.PING, MsgType.FIND_NODE, MsgType.FIND_VALUE, MsgType.STORE})

# Fields each message type may carry beyond the envelope ("v", "t", "i", "n") and the address
# token ("y"): in a reply, the token of the address it goes to; in a request, the token that
# address got from us before, which proves it receives what we send there.
_BODY: dict[MsgType, frozenset[str]] = {
    MsgType.PING: frozenset(),
    MsgType.PONG: frozenset(),
    MsgType.FIND_NODE: frozenset({"k", "pad"}),
    MsgType.NODES: frozenset({"c", "tr"}),
    MsgType.FIND_VALUE: frozenset({"k", "pad"}),
    MsgType.VALUES: frozenset({"r", "tr"}),
    MsgType.STORE: frozenset({"r"}),
    MsgType.STORED: frozenset({"ok", "e"}),
    MsgType.ERROR: frozenset({"e"}),
}
_REQUIRED: dict[MsgType, frozenset[str]] = {
    MsgType.FIND_NODE: frozenset({"k"}),
    MsgType.NODES: frozenset({"c"}),
    MsgType.FIND_VALUE: frozenset({"k"}),
    MsgType.VALUES: frozenset({"r"}),
    MsgType.STORE: frozenset({"r"}),
    MsgType.STORED: frozenset({"ok"}),
    MsgType.ERROR: frozenset({"e"}),
}


@dataclass(frozen=True, slots=True)
class Contact:
    """A peer as others see it: its claimed node id at the address its datagrams came from."""

    node_id: bytes
    host: str
    port: int

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded datagram; only the fields of its ``kind`` are set."""

    kind: MsgType
    rid: bytes
    sender: bytes
    target: bytes | None = None
    contacts: tuple[Contact, ...] = ()
    records: tuple[Record, ...] = ()
    ok: bool = False
    reason: str = ""
    token: bytes | None = None
    truncated: bool = False  # a reply cut to the amplification limit: ask again with the token
    padding: int = 0  # zero bytes a request carries to earn a larger reply (QUIC pads too)


def valid_host(host: Any) -> bool:
    """A canonical, unicast IPv4/IPv6 literal (no names: peers are addressed by IP)."""
    return isinstance(host, str) and len(host) <= 45 and _valid_host_text(host)


@functools.lru_cache(maxsize=4096)
def _valid_host_text(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return str(ip) == host and not (ip.is_unspecified or ip.is_multicast)


def encode(msg: Message) -> bytes:
    """Serialise ``msg``; raises ValueError if it would exceed ``MAX_DATAGRAM`` (a local bug)."""
    out: dict[str, Any] = {"v": VERSION, "t": int(msg.kind), "i": msg.rid, "n": msg.sender}
    if msg.token is not None:
        out["y"] = msg.token
    if msg.truncated:
        out["tr"] = True
    if msg.padding:
        out["pad"] = bytes(msg.padding)
    kind = msg.kind
    if kind in (MsgType.FIND_NODE, MsgType.FIND_VALUE):
        out["k"] = msg.target
    elif kind is MsgType.NODES:
        out["c"] = [[c.node_id, c.host, c.port] for c in msg.contacts]
    elif kind is MsgType.VALUES:
        out["r"] = [r.to_map() for r in msg.records]
    elif kind is MsgType.STORE:
        out["r"] = msg.records[0].to_map()
    elif kind is MsgType.STORED:
        out["ok"] = msg.ok
        if msg.reason:
            out["e"] = msg.reason
    elif kind is MsgType.ERROR:
        out["e"] = msg.reason
    data = msgpack.packb(out, use_bin_type=True)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"{kind.name} message of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return data


def _id(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise MalformedMessage(f"{name}: expected {ID_SIZE} bytes")
    return value


def _contact(item: Any) -> Contact:
    if not isinstance(item, list) or len(item) != 3:
        raise MalformedMessage("contact: expected [node_id, host, port]")
    node_id, host, port = item
    if not valid_host(host):
        raise MalformedMessage("contact: host is not an IP address")
    if type(port) is not int or not 1 <= port <= 65535:
        raise MalformedMessage("contact: bad port")
    return Contact(_id(node_id, "contact id"), host, port)


def _record(item: Any) -> Record:
    try:
        return record_from_map(item, MAX_VALUE)
    except MalformedRecord as exc:
        raise MalformedMessage(str(exc)) from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise MalformedMessage("reason: expected a short string")
    return value


def decode(data: bytes) -> Message:
    """Parse and validate one datagram; raises ``MalformedMessage`` and nothing else."""
    if not isinstance(data, bytes | bytearray | memoryview) or not 0 < len(data) <= MAX_DATAGRAM:
        raise MalformedMessage("datagram size out of bounds")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_DATAGRAM,
            max_bin_len=MAX_DATAGRAM,
            max_array_len=MAX_CONTACTS * 3,
            max_map_len=16,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise MalformedMessage(f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("envelope: expected a map")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise MalformedMessage("unsupported protocol version")
    raw_kind = obj.get("t")
    if type(raw_kind) is not int or raw_kind not in MsgType._value2member_map_:
        raise MalformedMessage("unknown message type")
    kind = MsgType(raw_kind)
    extra = set(obj) - {"v", "t", "i", "n", "y"}
    if not extra <= _BODY[kind] or not _REQUIRED.get(kind, frozenset()) <= extra:
        raise MalformedMessage(f"{kind.name}: unexpected or missing fields")
    rid = _id(obj.get("i"), "request id")
    sender = _id(obj.get("n"), "sender id")
    token = obj.get("y")
    if token is not None and (not isinstance(token, bytes) or len(token) != TOKEN_SIZE):
        raise MalformedMessage(f"token: expected {TOKEN_SIZE} bytes")
    truncated = obj.get("tr", False)
    if truncated is not False and truncated is not True:
        raise MalformedMessage("'tr' must be a boolean")
    pad = obj.get("pad", b"")
    if not isinstance(pad, bytes):
        raise MalformedMessage("'pad' must be bytes")
    fields = _body(kind, obj)
    return Message(kind, rid, sender, token=token, truncated=truncated, padding=len(pad), **fields)


def _body(kind: MsgType, obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``kind`` beyond the envelope, checked."""
    if kind in (MsgType.FIND_NODE, MsgType.FIND_VALUE):
        return {"target": _id(obj["k"], "target")}
    if kind is MsgType.NODES:
        items = obj["c"]
        if not isinstance(items, list) or len(items) > MAX_CONTACTS:
            raise MalformedMessage("NODES: expected a bounded list of contacts")
        return {"contacts": tuple(_contact(c) for c in items)}
    if kind is MsgType.VALUES:
        items = obj["r"]
        if not isinstance(items, list) or len(items) > MAX_RECORDS:
            raise MalformedMessage("VALUES: expected a bounded list of records")
        if not items and not obj.get("tr"):
            raise MalformedMessage("VALUES: no records in a reply that was not cut")
        return {"records": tuple(_record(r) for r in items)}
    if kind is MsgType.STORE:
        return {"records": (_record(obj["r"]),)}
    if kind is MsgType.STORED:
        if type(obj["ok"]) is not bool:
            raise MalformedMessage("STORED: 'ok' must be a boolean")
        return {"ok": obj["ok"], "reason": _reason(obj.get("e", ""))}
    if kind is MsgType.ERROR:
        return {"reason": _reason(obj["e"])}
    return {}
