"""DHT routes (BitDust's ``dht/node/find``, ``dht/value/get``, ``dht/value/set``).

Keys are names (``suppliers:alice@host-a.com``) hashed to 20-byte DHT keys, as BitDust does;
values are text. Every record returned was verified by the DHT before it got here.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.dht.protocol import DHTBusy
from bitdust.dht.records import Record, dht_key, sign_record
from bitdust.dht.schemes import RsaSigner
from bitdust.node.service import ServiceUnavailable

MAX_KEY = 256
MAX_VALUE = 4000


def _dht(call: Call) -> Any:
    return call.ctx.node.service("entangled-dht").dht


@contextlib.contextmanager
def _unless_busy() -> Iterator[None]:
    """A node running its maximum of DHT operations answers 503: a retry will do."""
    try:
        yield
    except DHTBusy as exc:
        raise ApiError(503, f"{exc}; try again shortly") from None


def record_view(record: Record) -> dict[str, Any]:
    try:
        value: str = record.value.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(record.value).decode(), "base64"
    return {
        "value": value,
        "encoding": encoding,
        "created": record.created,
        "expires": record.expires,
        "scheme": record.scheme,
        "signer": record.public_key.hex(),
        "owner": record.owner,
    }


def _key(name: str) -> bytes:
    if not 0 < len(name) <= MAX_KEY:
        raise ApiError(400, f"field 'key': expected 1 to {MAX_KEY} characters")
    return dht_key(name)


@route("GET", "dht/node/find", Param("node_id", str, default=""))
async def node_find(call: Call) -> dict[str, Any]:
    node_id = call.args["node_id"]
    if node_id and not re.fullmatch(r"[0-9a-fA-F]{40}", node_id):
        raise ApiError(400, "field 'node_id': expected 40 hexadecimal digits")
    target = bytes.fromhex(node_id) if node_id else os.urandom(20)
    with _unless_busy():
        contacts = await _dht(call).find_node(target)
    return {
        "target": target.hex(),
        "nodes": [{"node_id": c.node_id.hex(), "host": c.host, "port": c.port} for c in contacts],
    }


@route("GET", "dht/value/get", Param("key", str, required=True))
async def value_get(call: Call) -> dict[str, Any]:
    with _unless_busy():
        records = await _dht(call).get_value(_key(call.args["key"]))
    return {"key": call.args["key"], "values": [record_view(r) for r in records]}


@route(
    "POST",
    "dht/value/set",
    Param("key", str, required=True),
    Param("value", str, required=True),
    Param("expire", int, default=None),
)
async def value_set(call: Call) -> dict[str, Any]:
    """Signed with the user's identity key and IDURL when this node has an identity, else with
    the node's own DHT key."""
    value = call.args["value"].encode("utf-8")
    if len(value) > MAX_VALUE:
        raise ApiError(400, f"field 'value': larger than {MAX_VALUE} bytes")
    config = call.ctx.config
    max_age = int(config["services/entangled-dht/max-age"])
    expire = call.args["expire"]
    if expire is not None and not 0 < expire <= max_age:
        raise ApiError(400, f"field 'expire': expected 1 to {max_age} seconds")
    key, dht = _key(call.args["key"]), _dht(call)
    identity = _own_identity(call)
    with _unless_busy():
        if identity is None:
            stored = await dht.set_value(key, value, age=expire)
        else:
            age = expire or int(config["services/entangled-dht/default-age"])
            signer = RsaSigner(identity.private_key)
            owner = identity.identity.idurl
            record = sign_record(signer, key, value, int(time.time()), age, owner)
            stored = await dht.publish(record)
    return {"key": call.args["key"], "stored": stored}


def _own_identity(call: Call) -> Any:
    try:
        return call.ctx.node.service("identity-propagate").current
    except ServiceUnavailable:
        return None


ROUTES: list[Route] = [node_find, value_get, value_set]
