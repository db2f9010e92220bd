"""The foundation's routes: process, network status, config, services and states (DESIGN §6).

Handlers get a :class:`~bitdust.api.server.Call` (the process, the node, the config, checked
arguments); they return plain data for the envelope or raise an error that the server turns into
one.
"""

from __future__ import annotations

from typing import Any

from bitdust.api import dht, identity, p2p, storage, supplier
from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.config import OPTIONS, get_option
from bitdust.node.catalog import SPECS
from bitdust.node.service import StatusSection


@route("GET", "process/health")
async def process_health(call: Call) -> dict[str, Any]:
    return {"ready": call.node.ready}


@route("GET", "process/info")
async def process_info(call: Call) -> dict[str, Any]:
    return call.process.info()


@route("GET POST", "process/stop")
async def process_stop(call: Call) -> dict[str, Any]:
    call.process.request_stop()
    return {"stopping": True}


@route("GET POST", "process/restart")
async def process_restart(call: Call) -> dict[str, Any]:
    await call.process.restart_services()
    return {"restarted": True, "ready": call.node.ready}


@route(
    "GET",
    "network/status",
    *(Param(section.value, bool, default=False) for section in StatusSection),
)
async def network_status(call: Call) -> dict[str, Any]:
    sections = [section for section in StatusSection if call.args[section.value]]
    return await call.node.network_status(sections)


def _option_row(call: Call, key: str) -> dict[str, Any]:
    option = OPTIONS[key]
    config = call.config
    return {
        "key": key,
        "value": option.format(config[key]),
        "layer": config.layer(key),
        "default": option.format(option.default),
        "type": option.type.name,
        "expected": option.expected,
        "live": option.live,
        "help": option.help,
    }


@route("GET", "config/list")
async def config_list(call: Call) -> list[dict[str, Any]]:
    return [_option_row(call, key) for key in sorted(OPTIONS)]


@route("GET", "config/get/{key:.+}")
async def config_get(call: Call) -> dict[str, Any]:
    key = get_option(call.path("key")).key
    return _option_row(call, key)


@route("POST", "config/set/{key:.+}", Param("value", (str, int, bool, float), required=True))
async def config_set(call: Call) -> dict[str, Any]:
    key = get_option(call.path("key")).key
    value = call.args["value"]
    raw = value if isinstance(value, str) else str(value)
    _, applied, pending = call.process.set_option(key, raw)
    row = _option_row(call, key)
    row["applied"] = key in applied
    row["restart_needed"] = key in pending
    return row


@route("POST", "config/unset/{key:.+}")
async def config_unset(call: Call) -> dict[str, Any]:
    """Remove the key from the API's settings, so the layer below decides."""
    key = get_option(call.path("key")).key
    removed, applied, pending = call.process.unset_option(key)
    row = _option_row(call, key)
    row["removed"] = removed
    row["applied"] = key in applied
    row["restart_needed"] = key in pending
    return row


@route("GET", "service/list")
async def service_list(call: Call) -> list[dict[str, Any]]:
    return [call.node.service_info(name) for name in call.node.slots]


@route("GET", "service/info/{name}")
async def service_info(call: Call) -> dict[str, Any]:
    name = call.path("name").replace("_", "-").removeprefix("service-")
    if name not in SPECS:
        raise ApiError(404, f"unknown service {name!r}; see 'bitdust service list'")
    return call.node.service_info(name)


@route("GET", "state/list", alias="automat/list")
async def state_list(call: Call) -> list[dict[str, Any]]:
    return call.node.states()


ROUTES: list[Route] = [
    process_health,
    process_info,
    process_stop,
    process_restart,
    network_status,
    config_list,
    config_get,
    config_set,
    config_unset,
    service_list,
    service_info,
    state_list,
]


def all_routes() -> list[Route]:
    """The foundation's routes and those of each capability."""
    return [
        *ROUTES,
        *dht.ROUTES,
        *identity.ROUTES,
        *p2p.ROUTES,
        *supplier.ROUTES,
        *storage.ROUTES,
    ]
