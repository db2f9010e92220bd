"""The API's description of itself: an OpenAPI 3.1 document built from the routes' own
declarations (methods, paths, :class:`~bitdust.api.server.Param`s, handler docstrings).

There is no second list to keep in step: a route added to the node appears here as it is
registered, at both of its paths (BitDust's ``/X/Y/v1`` and ``/v1/X/Y``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bitdust import __version__

if TYPE_CHECKING:
    from bitdust.api.server import Param, Route

_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number", list: "array"}
_PATH_VARIABLE = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def url_forms(path: str) -> tuple[str, str]:
    """The two URLs a route answers at: BitDust's ``/X/Y/v1`` and ``/v1/X/Y``."""
    return f"/{path}/v1", f"/v1/{path}"


OPENAPI_URL = "/openapi.json"
METRICS_URL = "/metrics"


def openapi(routes: Iterable[Route], metrics: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``routes``, of itself and, when served, of ``/metrics``."""
    paths: dict[str, Any] = {OPENAPI_URL: {"get": SELF}}
    if metrics:
        paths[METRICS_URL] = {"get": METRICS}
    for route in routes:
        for path in route.paths:
            for url in url_forms(path):
                template = _PATH_VARIABLE.sub(r"{\1}", url)
                item = paths.setdefault(template, {})
                for method in route.methods:
                    item[method.lower()] = _operation(route, method, url, template)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bitdust node API",
            "version": __version__,
            "description": (
                "The local operator's API of one bitdust instance. Every answer is BitDust's "
                "envelope; the secret is in <runtime dir>/api.secret."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"api_secret": []}, {"bearer": []}],
    }


def _operation(route: Route, method: str, url: str, template: str) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip()
    suffix = "" if url.startswith("/v1/") else "_bitdust"
    operation: dict[str, Any] = {
        "operationId": f"{route.handler.__name__}_{method.lower()}{suffix}",
        "summary": doc.splitlines()[0] if doc else f"{method} {route.paths[0]}",
        "responses": RESPONSES,
    }
    if doc:
        operation["description"] = " ".join(doc.split())
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", template)
    ]
    has_body = method not in ("GET", "DELETE")
    if not has_body or route.stream_body:
        parameters += [
            {"name": p.name, "in": "query", "required": p.required, "schema": _schema(p)}
            for p in route.params
        ]
    if has_body and route.stream_body:
        operation["requestBody"] = STREAMED_BODY
    elif has_body and route.params:
        operation["requestBody"] = {
            "required": any(p.required for p in route.params),
            "content": {"application/json": {"schema": _body_schema(route.params)}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _schema(param: Param) -> dict[str, Any]:
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    names = [_JSON_TYPES[t] for t in types]
    schema: dict[str, Any] = {"type": names[0] if len(names) == 1 else names}
    if types == (int,):
        schema["format"] = "int64"  # wider numbers are refused (server._int64)
    if param.default is not None:
        schema["default"] = param.default
    return schema


def _body_schema(params: tuple[Param, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: _schema(p) for p in params},
        "additionalProperties": False,
    }
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    return schema


SCHEMAS = {
    "Ok": {
        "type": "object",
        "required": ["status", "result"],
        "properties": {
            "status": {"const": "OK"},
            "result": {"description": "the route's answer"},
            "execution": {"type": "string", "description": "seconds taken"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["status", "errors"],
        "properties": {
            "status": {"const": "ERROR"},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
}

#: a route declared with ``stream_body``: its arguments are in the query, the body is the file
STREAMED_BODY = {
    "required": True,
    "description": "the file's bytes, streamed (Content-Length: its size)",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}

SECURITY_SCHEMES = {
    "api_secret": {"type": "apiKey", "in": "header", "name": "api_secret"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "the same secret"},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


RESPONSES = {
    "200": {
        "description": "done",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ok"}}},
    },
    "400": _error("a field is missing, unknown or of the wrong type"),
    "401": _error("the secret is missing or wrong"),
    "403": _error("refused: a request from a web page, or a Host that is not local"),
    "404": _error("no such route, setting or service"),
    "409": _error("the node's state refuses it (a service not running, a setting overridden)"),
    "500": _error("internal error; see the node's log"),
}

SELF = {
    "operationId": "openapi_get",
    "summary": "This document.",
    "responses": {
        "200": {"description": "the OpenAPI document", "content": {"application/json": {}}},
        "401": RESPONSES["401"],
    },
}

METRICS = {
    "operationId": "metrics_get",
    "summary": "The node's figures in Prometheus' text format (docs/metrics.md lists them).",
    "responses": {
        "200": {"description": "Prometheus text exposition", "content": {"text/plain": {}}},
        "401": RESPONSES["401"],
    },
}
