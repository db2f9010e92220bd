"""The API's argument decoder against arbitrary bodies and query strings: it returns checked
arguments or raises ApiError with a 4xx status, never anything else (DESIGN §13)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from typing import Any

from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from bitdust.api.server import MAX_BODY, ApiError, Param, read_arguments, read_body

PARAMS = (
    Param("key", str, required=True),
    Param("value", (str, int, bool, float), default=None),
    Param("expire", int, default=None),
    Param("dht", bool, default=False),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["key", "value", "expire", "dht", "other"])


async def decode(body: bytes, query: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), 4 * MAX_BODY, loop=loop)  # never pauses here
    stream.feed_data(body)
    stream.feed_eof()
    headers = {"Content-Length": str(len(body)), "Content-Type": "application/json"}
    request = make_mocked_request("POST", f"/x?{query}", headers=headers, payload=stream)
    return await read_arguments(request, PARAMS)


def outcome(body: bytes, query: str = "") -> dict[str, Any] | ApiError:
    try:
        return asyncio.run(decode(body, query))
    except ApiError as exc:
        assert 400 <= exc.status < 500 and str(exc)
        return exc


@given(st.binary(max_size=200))
def test_any_bytes_are_arguments_or_a_4xx(body: bytes) -> None:
    outcome(body)


@given(st.dictionaries(FIELDS, JSON, max_size=4) | JSON)
def test_any_json_is_arguments_or_a_4xx(data: Any) -> None:
    result = outcome(json.dumps(data).encode())
    if isinstance(result, dict):
        assert isinstance(result["key"], str)
        assert result["expire"] is None or type(result["expire"]) is int
        for value in (result["expire"], result["value"]):  # what SQLite and the OS can take
            assert type(value) is not int or -(2**63) <= value < 2**63


def test_whole_numbers_beyond_64_bits_are_400_from_a_body_or_a_query() -> None:
    for number in (2**63, -(2**63) - 1, 10**30):
        result = outcome(json.dumps({"key": "k", "expire": number}).encode())
        assert (
            isinstance(result, ApiError)
            and str(result) == "field 'expire': a whole number out of range"
        )
    assert outcome(b"", "key=k&expire=9223372036854775807")["expire"] == 2**63 - 1  # type: ignore[index]
    result = outcome(b"", "key=k&expire=9223372036854775808")
    assert isinstance(result, ApiError) and result.status == 400


@given(st.lists(st.tuples(FIELDS, st.text(max_size=12)), max_size=4))
def test_any_query_is_arguments_or_a_4xx(pairs: list[tuple[str, str]]) -> None:
    outcome(b"", urllib.parse.urlencode(pairs))


def test_the_body_limit_is_the_named_constant() -> None:
    body = json.dumps({"key": "k", "value": "x" * MAX_BODY}).encode()
    result = outcome(body)
    assert isinstance(result, ApiError) and result.status == 413
    assert isinstance(outcome(json.dumps({"key": "k", "value": "x" * 1000}).encode()), dict)


def test_a_body_that_stops_coming_is_408_after_the_deadline() -> None:
    async def stalled() -> ApiError:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()  # a connection whose peer sends nothing more
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock=ours)
        protocol = BaseProtocol(loop)
        protocol.connection_made(transport)
        stream = StreamReader(protocol, 4 * MAX_BODY, loop=loop)
        stream.feed_data(b'{"key": "k", "val')  # and no EOF
        headers = {"Content-Length": "100", "Content-Type": "application/json"}
        request = make_mocked_request("POST", "/x", headers=headers, payload=stream)
        started = loop.time()
        try:
            await asyncio.wait_for(read_body(request, MAX_BODY, seconds=0.2), 5)
        except ApiError as exc:
            assert 0.2 <= loop.time() - started < 2
            return exc
        finally:
            transport.close()
            theirs.close()
        raise AssertionError("the read did not end")

    error = asyncio.run(stalled())
    assert (error.status, str(error)) == (408, "request body not received within 0.2 s")
