"""Clients of identity servers: submit an identity over TCP, download one over HTTP.

:func:`send_identity` submits to a server's TCP intake (see :mod:`bitdust.identity.intake` for the
framing), :func:`fetch_identity` downloads an IDURL over HTTP. Host names go through a
``resolve(host) -> address`` callable given by the caller (the node passes one that consults
``services/network/host-map`` before DNS); it may be sync or async. Never serves anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

import aiohttp

from bitdust.identity.document import MAX_DOCUMENT_SIZE
from bitdust.identity.errors import (
    IdentityError,
    IdentityNotFound,
    IdentityRefused,
    IdentityServerError,
    Refusal,
)
from bitdust.identity.idurl import DEFAULT_HTTP_PORT, parse_idurl
from bitdust.identity.intake import MAX_REPLY_LENGTH, encode_request, parse_reply

__all__ = ["Resolver", "fetch_identity", "resolve_host", "send_identity"]

Resolver = Callable[[str], str | Awaitable[str]]

DEFAULT_TIMEOUT = 10.0
_READ_CHUNK = 16 * 1024


async def send_identity(
    host: str, tcp_port: int, xml_bytes: bytes, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Submit ``xml_bytes`` to the identity server at ``host:tcp_port`` (an address or a name
    the system resolver knows).

    Returns the IDURL the server stored it at. Raises :class:`IdentityRefused` with the server's
    reason, or :class:`IdentityServerError` when the server cannot be reached or answers nonsense.
    """
    where = f"{host}:{tcp_port}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, tcp_port, limit=MAX_REPLY_LENGTH)
            writer.write(encode_request(xml_bytes))
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        raise IdentityServerError(
            f"identity server {where} did not answer in {timeout:g} s"
        ) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise IdentityServerError(f"cannot reach identity server {where}: {reason}") from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
    try:
        ok, text = parse_reply(line)
    except ValueError as exc:
        raise IdentityServerError(f"identity server {where}: {exc}") from None
    if not ok:
        raise IdentityRefused(Refusal.BY_REMOTE_SERVER, text)
    return text


async def fetch_identity(
    idurl: str,
    resolve: Resolver,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_size: int = MAX_DOCUMENT_SIZE,
) -> bytes:
    """Download the identity at ``idurl`` over HTTP and return its bytes (not parsed).

    ``resolve(host)`` gives the address to connect to; the request carries the IDURL's host in
    ``Host``. Raises :class:`IdentityNotFound` on 404 and :class:`IdentityServerError` on any other
    failure (unreachable, timeout, other status, larger than ``max_size``).
    """
    parsed = parse_idurl(idurl)
    address = await resolve_host(resolve, parsed.host)
    host_header = (
        parsed.host if parsed.port == DEFAULT_HTTP_PORT else f"{parsed.host}:{parsed.port}"
    )
    url = f"http://{_url_host(address)}:{parsed.port}/{parsed.name}.xml"
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.get(url, headers={"Host": host_header}, allow_redirects=False) as response,
        ):
            if response.status == 404:
                raise IdentityNotFound(f"{idurl}: no such identity on its server (HTTP 404)")
            if response.status != 200:
                raise IdentityServerError(
                    f"{idurl}: the identity server answered HTTP {response.status}"
                )
            if response.content_length is not None and response.content_length > max_size:
                raise IdentityServerError(f"{idurl}: the identity is larger than {max_size} bytes")
            data = bytearray()
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                data += chunk
                if len(data) > max_size:
                    raise IdentityServerError(
                        f"{idurl}: the identity is larger than {max_size} bytes"
                    )
            return bytes(data)
    except TimeoutError:
        raise IdentityServerError(
            f"{idurl}: the identity server did not answer in {timeout:g} s"
        ) from None
    except aiohttp.ClientError as exc:
        raise IdentityServerError(
            f"{idurl}: cannot reach the identity server ({_client_reason(exc)})"
        ) from None


async def resolve_host(resolve: Resolver, host: str) -> str:
    """Call a sync or async resolver; failures become :class:`IdentityServerError`."""
    try:
        address = resolve(host)
        if inspect.isawaitable(address):
            address = await address
    except IdentityError:
        raise
    except Exception as exc:
        raise IdentityServerError(f"cannot resolve {host}: {exc}") from None
    if not isinstance(address, str) or not address:
        raise IdentityServerError(f"cannot resolve {host}")
    return address


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _client_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not None:
        return exc.os_error.strerror or str(exc.os_error)
    return type(exc).__name__
