"""The REST API's HTTP shell: routes, the secret check, arguments and BitDust's envelope.

Every answer is ``{"status": "OK", "result": ...}`` or ``{"status": "ERROR", "errors": [...]}``
with a matching HTTP code. Arguments come from the query string or a JSON object body and are
checked against the route's declared parameters: anything malformed, mistyped or unknown is a 400
that names the field, and the handler never runs.

File content never passes through memory whole: a route declared with ``stream_body`` takes its
arguments from the query string only and reads the body itself, piece by piece; a handler that
sends a file returns the :class:`~aiohttp.web.StreamResponse` it prepared and wrote.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from bitdust.api.meta import METRICS_URL, OPENAPI_URL, openapi, url_forms
from bitdust.config import BadValue, Config, ConfigError, Overridden, UnknownKey
from bitdust.node.service import ServiceError

if TYPE_CHECKING:
    from bitdust.api.metrics import Exporter
    from bitdust.node.node import Node

log = logging.getLogger(__name__)

# The largest request body read into memory. Routes that take file content will stream it
# instead of raising this.
MAX_BODY = 1024 * 1024
BODY_SECONDS = 30.0  # for all of MAX_BODY; a local client sends it in milliseconds
JSON_TYPE = "application/json"
OCTET_TYPE = "application/octet-stream"  # a streamed body: a type no web form can send
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class ApiError(Exception):
    """An error answered to the caller with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Param:
    name: str
    type: type | tuple[type, ...] = str
    required: bool = False
    default: Any = None


class Process(Protocol):
    """What the running process offers the API; the daemon implements it."""

    node: Node
    config: Config

    def info(self) -> dict[str, Any]: ...

    def request_stop(self) -> None: ...

    async def restart_services(self) -> None: ...

    def set_option(self, key: str, raw: str) -> tuple[str, list[str], list[str]]:
        """Check, write to api-settings.conf and reload; (value as written, applied, pending)."""
        ...

    def unset_option(self, key: str) -> tuple[bool, list[str], list[str]]:
        """Remove from api-settings.conf and reload; (whether it was there, applied, pending)."""
        ...


@dataclass(frozen=True)
class Call:
    """One API call as a handler sees it: the process, the request, the checked arguments.

    Handlers reach services through :meth:`service` and take everything else from ``args``
    and :meth:`path`; they never parse the request themselves.
    """

    process: Process
    request: web.Request
    args: dict[str, Any]

    @property
    def node(self) -> Node:
        return self.process.node

    @property
    def config(self) -> Config:
        return self.process.config

    def path(self, name: str) -> str:
        """A variable part of the route's path, e.g. ``key`` of ``config/get/{key:.+}``."""
        return self.request.match_info[name]

    def service(self, name: str) -> Any:
        """The running service ``name``, an instance of the class the catalogue names for it;
        ServiceUnavailable (409) says why it is not running. Typed by the caller: a route module
        imports its service's class for annotations only, so that a node loads the code of the
        services it runs and no other (DESIGN §5)."""
        return self.node.service(name)


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    paths: tuple[str, ...]  # BitDust's group paths, e.g. "network/status", "config/get/{key:.+}"
    handler: Handler
    params: tuple[Param, ...] = field(default_factory=tuple)
    stream_body: bool = False  # the handler reads ``call.request.content`` itself

    @property
    def body_type(self) -> str:
        """The Content-Type a write to this route carries."""
        return OCTET_TYPE if self.stream_body else JSON_TYPE


def route(
    methods: str, path: str, *params: Param, alias: str | None = None, stream_body: bool = False
) -> Callable[[Handler], Route]:
    """Declare a handler for ``methods`` (e.g. ``"GET POST"``) at ``path`` and its ``alias``.

    With ``stream_body`` the arguments come from the query string only and the server leaves the
    body unread: the handler streams it from ``call.request.content`` (file content, GBs).
    """

    def wrap(handler: Handler) -> Route:
        paths = (path,) if alias is None else (path, alias)
        return Route(tuple(methods.split()), paths, handler, params, stream_body)

    return wrap


def _parse_scalar(param: Param, raw: Any, from_query: bool) -> Any:
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    if isinstance(raw, str) and not _is_unicode(raw):
        raise ApiError(400, f"field {param.name!r}: not valid Unicode text (a lone surrogate)")
    if from_query:
        if str in types:
            return raw
        if bool in types and raw.lower() in _QUERY_BOOLS:
            return _QUERY_BOOLS[raw.lower()]
        if int in types and _WHOLE_NUMBER.fullmatch(raw):
            return _int64(param, int(raw))
    elif not (isinstance(raw, bool) and bool not in types) and isinstance(raw, types):
        return _int64(param, raw) if type(raw) is int else raw
    expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
    raise ApiError(400, f"field {param.name!r}: expected {expected}")


def _int64(param: Param, value: int) -> int:
    """``value`` when it fits a signed 64-bit integer, as SQLite and the OS take them: a
    handler never meets a number that would fail deep inside one of them."""
    if not -(2**63) <= value < 2**63:
        raise ApiError(400, f"field {param.name!r}: a whole number out of range")
    return value


def _is_unicode(text: str) -> bool:
    """False for text JSON can carry but no file or UTF-8 encoder can: lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ASCII digits only ("²" is a digit to str.isdigit); 19 of them carry a file's mtime in ns
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")
_QUERY_BOOLS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
    "": False,
}
_TYPE_NAMES = {
    str: "a string",
    int: "a whole number",
    bool: "true or false",
    float: "a number",
    list: "a list",
}


async def read_arguments(
    request: web.Request, params: tuple[Param, ...], from_body: bool = True
) -> dict[str, Any]:
    """The declared arguments from the query string and (``from_body``) the JSON body, checked."""
    known = {param.name: param for param in params}
    values: dict[str, Any] = {}
    for name, raw in request.query.items():
        if name not in known:
            raise ApiError(400, f"unknown field {name!r}")
        values[name] = _parse_scalar(known[name], raw, from_query=True)
    if from_body and request.can_read_body:
        body = await read_body(request, MAX_BODY)
        if body.strip():
            try:
                data = json.loads(body, parse_constant=_refuse_constant)
            except ValueError as exc:  # also UnicodeDecodeError, and an int of 4,300+ digits
                raise ApiError(400, f"request body is not valid JSON: {exc}") from None
            except RecursionError:
                raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
            if not isinstance(data, dict):
                raise ApiError(400, "request body must be a JSON object")
            for name, raw in data.items():
                if name not in known:
                    raise ApiError(400, f"unknown field {name!r}")
                if raw is None and not known[name].required:
                    continue  # JSON null: as if the optional field were not given
                values[name] = _parse_scalar(known[name], raw, from_query=False)
    for param in params:
        if param.name not in values:
            if param.required:
                raise ApiError(400, f"field {param.name!r} is required")
            values[param.name] = param.default
    return values


async def read_body(request: web.Request, limit: int, seconds: float = BODY_SECONDS) -> bytes:
    """The whole body, however many TCP segments it comes in; 413 once it exceeds ``limit``,
    408 when it has not all come within ``seconds`` (a stalled client frees its handler)."""
    too_large = ApiError(413, f"request body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.read(limit + 1 - len(body)):
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise ApiError(408, f"request body not received within {seconds:g} s") from None
    return bytes(body)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity: Python's json reads them, JSON has no such values."""
    raise ValueError(f"{name} is not a JSON value")


def envelope_ok(result: Any, started: float) -> web.Response:
    return web.json_response(
        {"status": "OK", "result": result, "execution": f"{time.perf_counter() - started:.5f}"}
    )


def envelope_error(status: int, *errors: str) -> web.Response:
    return web.json_response({"status": "ERROR", "errors": list(errors)}, status=status)


def _error_status(exc: Exception) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, Overridden):
        return 409
    if isinstance(exc, UnknownKey):
        return 404
    if isinstance(exc, BadValue | ConfigError):
        return 400
    return 409  # a service refused or is not running: the request conflicts with the state


def is_loopback_host(host_header: str, extra: set[str]) -> bool:
    host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host in extra:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def cross_site_refusal(request: web.Request, allowed_hosts: set[str]) -> str | None:
    """Why a request made by a web page is refused, or None for the local operator's tools.

    Browsers mark what a page sends: ``Sec-Fetch-Site`` (every request of a current browser) and
    ``Origin`` (every write); the CLI and curl send neither. A page on a local origin is allowed.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"access denied: a {site} request from a web page"
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            host = urllib.parse.urlsplit(origin).hostname
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            host = None
        if not host or not is_loopback_host(host, allowed_hosts):
            return f"access denied: requests from web pages of {origin[:80]!r} are refused"
    return None


def _secret_matches(request: web.Request, expected: str) -> bool:
    """BitDust's ``api_secret`` header or ``Authorization: Bearer``, compared in constant time.

    The secret is ASCII; any other header value (non-ASCII bytes arrive as surrogate escapes)
    simply does not match.
    """
    given = request.headers.get("api_secret") or request.headers.get("api-secret")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Bearer "):
        given = auth[len("Bearer ") :]
    return bool(given) and given.isascii() and hmac.compare_digest(given, expected)


#: the response a handler prepared itself, set as its headers go out
_STREAMED = web.RequestKey("bitdust_streamed", web.StreamResponse)


def _cut_short(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """A download that failed after its headers went out: close the connection, so the client
    sees a short body (a failure) instead of a second response glued to the first."""
    if request.transport is not None:
        request.transport.close()
    return response


def build_app(
    routes: list[Route],
    secret: Callable[[], str | None],
    allowed_hosts: set[str],
    process: Process,
    metrics: Exporter | None = None,
) -> web.Application:
    """The aiohttp application; ``secret()`` returns None when auth is turned off. With
    ``metrics``, ``GET /metrics`` serves its figures (behind the secret, as every route)."""
    body_types: dict[Callable[..., Any], str] = {}

    def wrap(route_: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                arguments = await read_arguments(request, route_.params, not route_.stream_body)
                result = await route_.handler(Call(process, request, arguments))
            except (ApiError, ConfigError, ServiceError) as exc:
                if _STREAMED in request:
                    raise  # part of the file is sent: no envelope can follow it
                return envelope_error(_error_status(exc), str(exc))
            if isinstance(result, web.StreamResponse):
                return result  # a download the handler wrote itself
            return envelope_ok(result, started)

        body_types[handle] = route_.body_type
        return handle

    @web.middleware
    async def guard(request: web.Request, handler: Callable) -> web.StreamResponse:
        refusal = cross_site_refusal(request, allowed_hosts)
        if refusal is not None:
            return envelope_error(403, refusal)
        expected = secret()
        if expected is None:
            # Without a secret, nothing proves the caller is not a web page: refuse what a
            # browser can send without asking (another Host, a form's content type).
            if not is_loopback_host(request.host or "", allowed_hosts):
                return envelope_error(403, f"access denied: Host {request.host!r} is not local")
            body_type = body_types.get(request.match_info.handler, JSON_TYPE)
            if request.method not in SAFE_METHODS and request.content_type != body_type:
                return envelope_error(
                    415, f"{request.method} requests must send Content-Type: {body_type}"
                )
        elif not _secret_matches(request, expected):
            return envelope_error(401, "access denied")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return envelope_error(404, f"method {request.method} {request.path} was not found")
        except web.HTTPMethodNotAllowed:
            return envelope_error(405, f"method {request.method} {request.path} is not allowed")
        except Exception:
            if request.transport is None or request.transport.is_closing():
                # e.g. an upload the CLI aborted before its last piece: nothing to answer
                log.info("API request %s %s: the client went away", request.method, request.path)
                return envelope_error(400, "the client went away")
            log.exception("API request %s %s failed", request.method, request.path)
            streamed = request.get(_STREAMED)
            if streamed is not None:
                return _cut_short(request, streamed)
            return envelope_error(500, "internal error; see the node's log")

    async def note_prepared(request: web.Request, response: web.StreamResponse) -> None:
        request[_STREAMED] = response

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.on_response_prepare.append(note_prepared)
    for route_ in routes:
        handler = wrap(route_)
        for path in route_.paths:
            for method in route_.methods:
                for url in url_forms(path):
                    app.router.add_route(method, url, handler)

    async def describe(request: web.Request) -> web.Response:
        # built when asked, rarely: held for the node's life it would be 0.1 MiB of every node
        return web.json_response(openapi(routes, metrics=metrics is not None))

    app.router.add_route("GET", OPENAPI_URL, describe)
    if metrics is not None:
        app.router.add_route("GET", METRICS_URL, metrics.handle)
    return app
