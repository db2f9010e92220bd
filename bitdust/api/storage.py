"""The customer's routes: files backed up and restored through the node, and its suppliers
(BitDust's ``file/*``, ``supplier/*`` and ``space/consumed``).

Uploads stream the file's bytes in the request body and downloads stream them in the response:
the daemon never reads or writes users' files itself (it cannot: ProtectHome), and nothing holds
a whole file in memory. The node reads the body only as fast as suppliers take the chunks, which is
the back-pressure the CLI's progress bar shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bitdust.api.server import ApiError, Call, Param, Route, route
from bitdust.identity.errors import IdurlError
from bitdust.identity.idurl import parse_idurl
from bitdust.storage.interface import (
    MAX_REMOTE_PATH,
    BackupError,
    NotInCatalogue,
    UploadResult,
    normalize_remote,
)

if TYPE_CHECKING:
    from bitdust.storage.catalogue import FileVersion
    from bitdust.storage.customer import CustomerService

MAX_FILE = 2**50
MODE_BITS = 0o7777


def _customer(call: Call) -> CustomerService:
    return call.service("customer")


def _remote(call: Call, customer: CustomerService, name: str = "remote") -> str:
    try:
        return normalize_remote(call.args[name], customer.own_names())
    except BackupError as exc:
        raise ApiError(400, f"field {name!r}: {exc}") from None


@route(
    "POST",
    "file/upload/start",
    Param("remote", str, required=True),
    Param("size", int, required=True),
    Param("mode", int, default=0o644),
    Param("mtime_ns", int, default=0),
    stream_body=True,
)
async def file_upload_start(call: Call) -> dict[str, Any]:
    """Back up the request body as a new version of ``remote``: ``size`` bytes (the body must
    be exactly that long), the file's ``mode`` and ``mtime_ns``. The result counts the chunks
    and how many were new (an unchanged file sends none)."""
    customer = _customer(call)
    remote = _remote(call, customer)
    size, mode, mtime_ns = call.args["size"], call.args["mode"], call.args["mtime_ns"]
    if not 0 <= size <= MAX_FILE:
        raise ApiError(400, f"field 'size': expected 0 to {MAX_FILE} bytes")
    if not 0 <= mode <= MODE_BITS:
        raise ApiError(400, "field 'mode': expected permission bits (0 to 0o7777)")
    if mtime_ns < 0:
        raise ApiError(400, "field 'mtime_ns': expected a time after 1970")

    async def pieces() -> Any:
        while piece := await call.request.content.readany():
            yield piece

    try:
        result = await customer.upload(pieces(), remote, size, mode, mtime_ns)
    except BackupError as exc:
        raise ApiError(409, str(exc)) from None
    return result.to_dict()


#: What a download asks the kernel to queue for its reader (capped by net.core.wmem_max): with
#: the default 208 KiB, node and CLI wake each other for every 200 KiB, and that ping-pong, not
#: either side's work, set the download's rate.
DOWNLOAD_SEND_BUFFER = 4 * 1024 * 1024


def _widen_send_buffer(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, DOWNLOAD_SEND_BUFFER)


#: Files one ``file/unchanged`` call may ask about.
MAX_UNCHANGED_BATCH = 1000
_FILE_FIELDS = {"remote": str, "size": int, "mode": int, "mtime_ns": int}


@route("POST", "file/unchanged", Param("files", list, required=True))
async def file_unchanged(call: Call) -> list[dict[str, Any] | None]:
    """For each of ``files`` (``remote``, ``size``, ``mode``, ``mtime_ns``; up to 1,000), in
    order: when the catalogue's newest version of it has that size, mode and mtime, that version
    as an upload's result that sent nothing, with the file's ``sha256`` (an upload skips the file
    without reading a byte, or, asked to read it again, compares its digest), else null."""
    customer = _customer(call)
    files = call.args["files"]
    if len(files) > MAX_UNCHANGED_BATCH:
        raise ApiError(400, f"field 'files': at most {MAX_UNCHANGED_BATCH} files at a time")
    wanted = []
    for position, item in enumerate(files):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(name), kind) and not isinstance(item.get(name), bool)
            for name, kind in _FILE_FIELDS.items()
        ):
            raise ApiError(
                400, f"field 'files': item {position} needs remote (text), size, mode, mtime_ns"
            )
        try:
            remote = normalize_remote(item["remote"], customer.own_names())
        except BackupError as exc:
            raise ApiError(400, f"field 'files': item {position}: {exc}") from None
        wanted.append((remote, item["size"], item["mode"], item["mtime_ns"]))
    found = await asyncio.to_thread(customer.catalogue.unchanged, wanted)
    return [
        {
            **UploadResult(v.path, v.version, v.size, len(v.chunk_ids), 0, 0, 0.0).to_dict(),
            "sha256": v.sha256.hex(),
        }
        if v
        else None
        for v in found
    ]


@route(
    "GET",
    "file/download/start",
    Param("remote", str, required=True),
    Param("version", int, default=None),
)
async def file_download_start(call: Call) -> web.StreamResponse:
    """The bytes of ``remote`` (its newest version, or ``version``) as the response body, with
    its size, mode, mtime and SHA-256 in ``X-Bitdust-*`` headers. A failure after the first
    byte ends the response short: the client never takes a partial file for a whole one."""
    customer = _customer(call)
    version = _version(customer, _remote(call, customer), call.args["version"])
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "X-Bitdust-Size": str(version.size),
            "X-Bitdust-Mode": str(version.mode),
            "X-Bitdust-Mtime-Ns": str(version.mtime_ns),
            "X-Bitdust-Sha256": version.sha256.hex(),
            "X-Bitdust-Version": str(version.version),
        }
    )
    response.content_length = version.size
    customer.data_keys()  # no identity: an error now, not a short body
    _widen_send_buffer(call.request)
    await response.prepare(call.request)
    await customer.download(version, response.write)
    await response.write_eof()
    return response


def _version(customer: CustomerService, remote: str, version: int | None) -> FileVersion:
    try:
        return customer.catalogue.version(remote, version)
    except NotInCatalogue as exc:
        raise ApiError(404, str(exc)) from None


def _file_row(version: FileVersion, versions: int) -> dict[str, Any]:
    return {
        "remote": version.path,
        "size": version.size,
        "mtime_ns": version.mtime_ns,
        "mode": version.mode,
        "version": version.version,
        "versions": versions,
        "created": version.created_at,
    }


@route(
    "GET",
    "file/list",
    Param("path", str, default=""),
    Param("after", str, default=""),
    Param("limit", int, default=0),
    alias="file/list/all",
)
async def file_list(call: Call) -> list[dict[str, Any]]:
    """The newest version of every backed-up file at or under ``path`` (all when empty), in
    path order. With ``limit``, at most that many, the first whose remote path sorts after
    ``after``: the next page starts after the last remote of this one. The catalogue is read in
    a worker thread, so that a listing of many files does not hold up the node."""
    customer = _customer(call)
    prefix = _remote(call, customer, "path") if call.args["path"] else ""
    after, limit = call.args["after"], call.args["limit"]
    if len(after.encode()) > MAX_REMOTE_PATH:
        raise ApiError(400, f"field 'after': at most {MAX_REMOTE_PATH} bytes")
    if limit < 0:
        raise ApiError(400, "field 'limit': expected 0 (every file) or more")
    found = await asyncio.to_thread(customer.catalogue.list_files, prefix, after, limit or -1)
    return [_file_row(summary.latest, summary.versions) for summary in found]


@route("GET", "file/info", Param("remote", str, required=True))
async def file_info(call: Call) -> dict[str, Any]:
    """Every kept version of ``remote``, its chunks and which supplier holds each fragment
    (read in a worker thread: a large file has thousands of chunks)."""
    customer = _customer(call)
    remote = _remote(call, customer)
    rows = await asyncio.to_thread(_version_rows, customer, remote)
    if not rows:
        raise ApiError(404, f"no file {remote!r} in the catalogue")
    return {"remote": remote, "versions": rows}


def _version_rows(customer: CustomerService, remote: str) -> list[dict[str, Any]]:
    versions = customer.catalogue.versions(remote)
    rows = []
    for version in versions:
        row = _file_row(version, len(versions))
        row["sha256"] = version.sha256.hex()
        row["chunks"] = [_chunk_row(customer, chunk_id) for chunk_id in version.chunk_ids]
        rows.append(row)
    return rows


def _chunk_row(customer: CustomerService, chunk_id: bytes) -> dict[str, Any]:
    chunk = customer.catalogue.chunk(chunk_id)
    return {
        "id": chunk_id.hex(),
        "size": chunk.size,
        "k": chunk.k,
        "n": chunk.n,
        "fragments": [
            {"index": p.index, "supplier": p.supplier, "state": p.state}
            for p in customer.catalogue.placements(chunk_id)
        ],
    }


@route("DELETE", "file/delete", Param("remote", str, required=True))
async def file_delete(call: Call) -> dict[str, Any]:
    """Forget ``remote`` (a file, or a directory and everything under it) and delete the
    fragments of the chunks nothing else references."""
    customer = _customer(call)
    remote = _remote(call, customer)
    try:
        return await customer.delete(remote)
    except NotInCatalogue:
        raise ApiError(404, f"no file or directory {remote!r} in the catalogue") from None


@route("GET", "supplier/list")
async def supplier_list(call: Call) -> list[dict[str, Any]]:
    """The hired suppliers by position, with the bytes of this node's fragments on each (a sum
    over every placement, read in a worker thread)."""
    return await asyncio.to_thread(_customer(call).supplier_rows)


@route("GET", "supplier/list/dht", Param("idurl", str, default=None))
async def supplier_list_dht(call: Call) -> dict[str, Any]:
    """The supplier list an identity (this node's by default) published in the DHT."""
    idurl = call.args["idurl"]
    if idurl is not None:
        try:
            parse_idurl(idurl)
        except IdurlError as exc:
            raise ApiError(400, f"field 'idurl': {exc}") from None
    return await _customer(call).supplier_list_in_dht(idurl)


@route(
    "DELETE",
    "supplier/replace",
    Param("position", int, default=None),
    Param("idurl", str, default=None),
)
async def supplier_replace(call: Call) -> dict[str, Any]:
    """Hire another supplier for a ``position`` (or the one ``idurl`` holds) and rebuild its
    fragments there from the others: BitDust's ``supplier replace``."""
    customer = _customer(call)
    hired = [row.idurl for row in customer.catalogue.suppliers()]
    position, idurl = call.args["position"], call.args["idurl"]
    if (position is None) == (idurl is None):
        raise ApiError(400, "give either 'position' or 'idurl'")
    if idurl is not None:
        if idurl not in hired:
            raise ApiError(404, f"{idurl} is not one of this node's suppliers")
        position = hired.index(idurl)
    if not 0 <= position < len(hired):
        raise ApiError(400, f"field 'position': expected 0 to {len(hired) - 1}")
    new = await customer.replace_supplier(position)
    rebuilt = await customer.repair_round()
    return {"position": position, "old": hired[position], "new": new, "rebuilt": rebuilt}


@route("GET", "space/consumed")
async def space_consumed(call: Call) -> dict[str, Any]:
    """What this node stores on suppliers: suppliers hired, bytes of fragments, space asked
    (a sum over every placement, read in a worker thread)."""
    return await asyncio.to_thread(_customer(call).consumed)


ROUTES: list[Route] = [
    file_upload_start,
    file_unchanged,
    file_download_start,
    file_list,
    file_info,
    file_delete,
    supplier_list,
    supplier_list_dht,
    supplier_replace,
    space_consumed,
]
