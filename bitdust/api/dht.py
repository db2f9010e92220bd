"""DHT routes (BitDust's ``dht/node/find``, ``dht/value/get``, ``dht/value/set``).

Keys are names (``suppliers:alice@host-a.com``) hashed to 20-byte DHT keys, as BitDust does;
values are text. Each route parses, calls one method of the ``entangled-dht`` service and wraps
the result; the service and the DHT core hold the rules (what signs, ages, sizes). Every record
returned was verified by the DHT before it got here.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.dht.protocol import DHTBusy
from bitdust.dht.refusals import RecordRefused

if TYPE_CHECKING:
    from bitdust.dht.owners import Found
    from bitdust.dht.service import DHTService

MAX_KEY = 256


def _dht(call: Call) -> DHTService:
    return call.service("entangled-dht")


@contextlib.contextmanager
def _answering_errors() -> Iterator[None]:
    """A busy node answers 503 (a retry will do); a record no node would take, 400."""
    try:
        yield
    except DHTBusy as exc:
        raise ApiError(503, f"{exc}; try again shortly") from None
    except RecordRefused as exc:
        raise ApiError(400, str(exc)) from None


def record_view(found: Found) -> dict[str, Any]:
    """``owner`` is the record's IDURL only when that identity's key signed it, else null."""
    record = found.record
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
        "owner": found.owner,
        "owned": record.name is not None,
    }


def _key(name: str) -> str:
    if not 0 < len(name) <= MAX_KEY:
        raise ApiError(400, f"field 'key': expected 1 to {MAX_KEY} characters")
    return name


@route("GET", "dht/node/find", Param("node_id", str, default=""))
async def node_find(call: Call) -> dict[str, Any]:
    node_id = call.args["node_id"]
    if node_id and not re.fullmatch(r"[0-9a-fA-F]{40}", node_id):
        raise ApiError(400, "field 'node_id': expected 40 hexadecimal digits")
    target = bytes.fromhex(node_id) if node_id else os.urandom(20)
    with _answering_errors():
        contacts = await _dht(call).find_node(target)
    return {
        "target": target.hex(),
        "nodes": [{"node_id": c.node_id.hex(), "host": c.host, "port": c.port} for c in contacts],
    }


@route(
    "GET",
    "dht/value/get",
    Param("key", str, required=True),
    Param("owner", str, default=None),
)
async def value_get(call: Call) -> dict[str, Any]:
    """With ``owner`` (an IDURL): the value that identity stored under its own key ``key``."""
    with _answering_errors():
        found = await _dht(call).get_value(_key(call.args["key"]), call.args["owner"])
    return {"key": call.args["key"], "values": [record_view(f) for f in found]}


@route(
    "POST",
    "dht/value/set",
    Param("key", str, required=True),
    Param("value", str, required=True),
    Param("expire", int, default=None),
    Param("owned", bool, default=False),
)
async def value_set(call: Call) -> dict[str, Any]:
    """Signed with the user's identity key and IDURL when this node has an identity, else with
    the node's own DHT key; ``expire`` is the record's lifetime in seconds; ``owned`` stores it
    under the signer's own key of that name, which nobody else can write."""
    name, value = _key(call.args["key"]), call.args["value"].encode("utf-8")
    with _answering_errors():
        stored = await _dht(call).set_value(name, value, call.args["expire"], call.args["owned"])
    return {"key": call.args["key"], "stored": stored}


ROUTES: list[Route] = [node_find, value_get, value_set]
