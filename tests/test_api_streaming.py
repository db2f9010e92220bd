"""File content through the REST API's shell without holding it in memory: a streamed body goes
to the handler piece by piece (query arguments only, the secret still required, a type no web
form can send when auth is off), and a download the handler writes itself passes through as it
is, or is cut short when it fails halfway. The CLI's client streams both ways over the unix
socket, aborts an upload before its last piece, and hears a refusal before sending everything.
Real aiohttp server on 127.0.0.1 and api.sock, test routes, no node.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bitdust.api.client import ApiClient, ClientError
from bitdust.api.server import (
    MAX_BODY,
    OCTET_TYPE,
    ApiError,
    Call,
    Param,
    Route,
    build_app,
    route,
)
from bitdust.config import Paths

SECRET = "s3cret"
PIECE = 1024 * 1024
BIG = 50 * PIECE
DOWNLOAD = b"0123456789" * 100_000


COMPLETED: list[str] = []  # the names of the uploads the test route saw whole


@route("POST", "test/upload", Param("name", str, required=True), stream_body=True)
async def upload(call: Call) -> dict[str, Any]:
    """Count and hash the body as it comes; a short body fails (aiohttp raises) unrecorded."""
    digest, size, pieces = hashlib.sha256(), 0, 0
    async for piece in call.request.content.iter_any():
        digest.update(piece)
        size += len(piece)
        pieces += 1
    COMPLETED.append(call.args["name"])
    return {"name": call.args["name"], "size": size, "pieces": pieces, "sha256": digest.hexdigest()}


@route("POST", "test/json", Param("value", str))
async def json_route(call: Call) -> dict[str, Any]:
    return {"value": call.args["value"]}


@route("GET", "test/download")
async def download(call: Call) -> web.StreamResponse:
    response = web.StreamResponse(headers={"x-bitdust-size": str(len(DOWNLOAD))})
    response.content_type = OCTET_TYPE
    response.content_length = len(DOWNLOAD)
    await response.prepare(call.request)
    for start in range(0, len(DOWNLOAD), 65536):
        await response.write(DOWNLOAD[start : start + 65536])
    return response


@route("GET", "test/broken", Param("kind", str, required=True))
async def broken(call: Call) -> web.StreamResponse:
    """Send a tenth of the promised bytes, then fail as the chunk store might."""
    response = web.StreamResponse()
    response.content_type = OCTET_TYPE
    response.content_length = len(DOWNLOAD)
    await response.prepare(call.request)
    await response.write(DOWNLOAD[: len(DOWNLOAD) // 10])
    if call.args["kind"] == "refused":
        raise ApiError(409, "a supplier went away")
    raise RuntimeError("a bug")


ROUTES: list[Route] = [upload, json_route, download, broken]


class Server:
    """The app under test on an ephemeral port, and a client session to call it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.runners: list[web.AppRunner] = []

    async def start(self, secret: str | None, unix_socket: str | None = None) -> str:
        app = build_app(ROUTES, lambda: secret, set(), None)  # type: ignore[arg-type]
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        if unix_socket is not None:
            await web.UnixSite(runner, unix_socket).start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with aiohttp.ClientSession() as session:
        server = Server(session)
        yield server
        for runner in server.runners:
            await runner.cleanup()


async def pieces(total: int) -> AsyncIterator[bytes]:
    piece = b"\xa5" * PIECE  # the same object each time: the sender holds one MiB
    for _ in range(total // PIECE):
        yield piece


async def post(server: Server, url: str, data: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    async with server.session.post(url, data=data, headers=headers) as answer:
        return answer.status, await answer.json()


async def test_a_50_mb_body_streams_through_in_pieces_with_bounded_memory(server: Server) -> None:
    base = await server.start(SECRET)
    tracemalloc.start()
    try:
        status, envelope = await post(
            server, f"{base}/test/upload/v1?name=big", pieces(BIG),
            api_secret=SECRET, **{"Content-Type": OCTET_TYPE, "Content-Length": str(BIG)},
        )  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, envelope["status"]) == (200, "OK"), envelope
    result = envelope["result"]
    assert result["name"] == "big" and result["size"] == BIG
    assert result["sha256"] == hashlib.sha256(b"\xa5" * BIG).hexdigest()
    assert result["pieces"] >= 50
    assert peak < 10 * PIECE, f"peak {peak} bytes: the body was buffered"


async def test_a_streamed_route_still_requires_the_secret(server: Server) -> None:
    base = await server.start(SECRET)
    for secret in ({}, {"api_secret": "wrong"}):
        status, envelope = await post(
            server, f"{base}/test/upload/v1?name=x", b"data", **secret,
            **{"Content-Type": OCTET_TYPE},
        )  # fmt: skip
        assert (status, envelope["errors"]) == (401, ["access denied"])


async def test_a_streamed_route_takes_arguments_from_the_query_only(server: Server) -> None:
    base = await server.start(SECRET)
    headers = {"api_secret": SECRET, "Content-Type": OCTET_TYPE}
    status, envelope = await post(server, f"{base}/v1/test/upload?bad=1", b"x", **headers)
    assert (status, envelope["errors"]) == (400, ["unknown field 'bad'"])
    body = b'{"name": "in the body"}'  # file content that happens to be JSON: not arguments
    status, envelope = await post(server, f"{base}/v1/test/upload", body, **headers)
    assert (status, envelope["errors"]) == (400, ["field 'name' is required"])
    status, envelope = await post(server, f"{base}/v1/test/upload?name=n", body, **headers)
    assert envelope["result"]["size"] == len(body)


async def test_without_auth_a_streamed_post_needs_the_octet_stream_type(server: Server) -> None:
    """A web page can POST a form to localhost without a preflight; never an octet-stream."""
    base = await server.start(None)
    url = f"{base}/test/upload/v1?name=x"
    status, envelope = await post(server, url, b"abc", **{"Content-Type": OCTET_TYPE})
    assert (status, envelope["result"]["size"]) == (200, 3)
    for refused in ("application/x-www-form-urlencoded", "text/plain", "application/json"):
        status, envelope = await post(server, url, b"abc", **{"Content-Type": refused})
        assert (status, envelope["errors"]) == (
            415, [f"POST requests must send Content-Type: {OCTET_TYPE}"]
        )  # fmt: skip
    status, envelope = await post(
        server, f"{base}/test/json/v1", b'{"value": "v"}', **{"Content-Type": OCTET_TYPE}
    )
    assert status == 415  # JSON routes keep requiring JSON


async def test_json_bodies_keep_their_limit(server: Server) -> None:
    base = await server.start(SECRET)
    body = b'{"value": "' + b"x" * MAX_BODY + b'"}'
    status, _ = await post(
        server, f"{base}/test/json/v1", body, api_secret=SECRET,
        **{"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 413


async def test_a_prepared_download_passes_through_with_its_headers(server: Server) -> None:
    base = await server.start(SECRET)
    url = f"{base}/v1/test/download"
    async with server.session.get(url, headers={"api_secret": SECRET}) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == OCTET_TYPE
        assert answer.headers["x-bitdust-size"] == str(len(DOWNLOAD))
        assert await answer.read() == DOWNLOAD


@pytest.mark.parametrize("kind", ["refused", "bug"])
async def test_a_download_failing_after_its_headers_is_cut_short(server: Server, kind: str) -> None:
    base = await server.start(SECRET)
    url = f"{base}/v1/test/broken?kind={kind}"
    async with server.session.get(url, headers={"api_secret": SECRET}) as answer:
        assert answer.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await answer.read()
    # the server carries on: the next call is answered
    url = f"{base}/v1/test/download"
    async with server.session.get(url, headers={"api_secret": SECRET}) as answer:
        assert await answer.read() == DOWNLOAD


async def test_openapi_documents_a_streamed_body(server: Server) -> None:
    base = await server.start(SECRET)
    async with server.session.get(f"{base}/openapi.json", headers={"api_secret": SECRET}) as answer:
        document = await answer.json()
    operation = document["paths"]["/v1/test/upload"]["post"]
    assert list(operation["requestBody"]["content"]) == [OCTET_TYPE]
    assert operation["parameters"] == [
        {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}}
    ]
    json_body = document["paths"]["/v1/test/json"]["post"]["requestBody"]["content"]
    assert list(json_body) == ["application/json"]


class Zeros(io.RawIOBase):
    """A file of ``size`` zero bytes that is never in memory whole."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


@pytest.fixture
async def client(server: Server, tmp_path: Path) -> ApiClient:
    """The CLI's client of an app on api.sock (with the secret in api.secret) and on TCP."""
    paths = Paths("streaming", tmp_path, tmp_path / "state", tmp_path / "run")
    paths.runtime_dir.mkdir()
    paths.api_secret.write_text(SECRET)
    base = await server.start(SECRET, str(paths.api_socket))
    port = int(base.rsplit(":", 1)[1])
    return ApiClient(paths, "127.0.0.1", port, "bitdust daemon")


async def test_the_client_uploads_over_the_unix_socket_in_pieces(client: ApiClient) -> None:
    size = 5 * PIECE + 123
    progress: list[int] = []
    result = await asyncio.to_thread(
        client.upload, "test/upload", {"name": "five"}, Zeros(size), size, progress.append
    )
    assert result["size"] == size and result["sha256"] == hashlib.sha256(bytes(size)).hexdigest()
    assert progress == [*range(PIECE, size, PIECE), size]
    assert client.paths.api_socket.exists()


async def test_an_upload_aborted_before_its_last_piece_is_not_recorded(client: ApiClient) -> None:
    class Changed(Exception):
        pass

    def before_last() -> None:
        raise Changed

    size = 3 * PIECE
    progress: list[int] = []
    with pytest.raises(Changed):
        await asyncio.to_thread(
            client.upload, "test/upload", {"name": "aborted"}, Zeros(size), size,
            progress.append, before_last,
        )  # fmt: skip
    assert progress == [PIECE, 2 * PIECE]
    await asyncio.to_thread(
        client.upload, "test/upload", {"name": "after"}, Zeros(1), 1, lambda _: None
    )
    assert COMPLETED[-1] == "after" and "aborted" not in COMPLETED


async def test_a_refusal_is_heard_before_the_body_is_all_sent(client: ApiClient) -> None:
    size = 200 * PIECE
    progress: list[int] = [0]
    with pytest.raises(ClientError, match=r"^unknown field 'bad'$"):
        await asyncio.to_thread(
            client.upload, "test/upload", {"name": "n", "bad": 1}, Zeros(size), size,
            progress.append,
        )  # fmt: skip
    assert progress[-1] < size


async def test_the_client_downloads_with_the_headers(client: ApiClient) -> None:
    sink = io.BytesIO()
    progress: list[int] = []
    headers = await asyncio.to_thread(client.download, "test/download", {}, sink, progress.append)
    assert sink.getvalue() == DOWNLOAD
    assert headers["x-bitdust-size"] == str(len(DOWNLOAD))
    assert progress[-1] == len(DOWNLOAD)


async def test_the_client_reports_a_download_cut_short_or_refused(client: ApiClient) -> None:
    with pytest.raises(ClientError, match="the node ended the download early"):
        await asyncio.to_thread(
            client.download, "test/broken", {"kind": "refused"}, io.BytesIO(), lambda _: None
        )
    with pytest.raises(ClientError, match=r"^field 'kind' is required$"):
        await asyncio.to_thread(client.download, "test/broken", {}, io.BytesIO(), lambda _: None)
