"""The p2p speed test between two real endpoints on loopback: both directions, and its bounds
(a size over the limit, a peer that sends less or more than it announced)."""

from __future__ import annotations

import asyncio
import hashlib

import msgpack
import pytest

from bitdust.p2p.errors import RequestRefused
from bitdust.p2p.speedtest import (
    MAX_BYTES,
    MAX_PENDING,
    RESULT,
    SEND,
    STREAM,
    Report,
    Speedtest,
    SpeedtestRefused,
    Tally,
    pseudo_random_data,
)
from bitdust.p2p.transport import P2PEndpoint
from tests.proxy.network import Network

ALICE = "http://host-a.com/alice.xml"
BOB = "http://host-b.com/bob.xml"
LIMIT = f"a speed test moves 1 to {MAX_BYTES} bytes"


@pytest.fixture
async def pair():
    network = Network()
    alice, bob = await network.direct(ALICE), await network.direct(BOB)
    yield Speedtest(alice), Speedtest(bob)
    await network.close()


@pytest.mark.parametrize("download", [False, True])
async def test_speedtest_both_ways_compares_digests(
    pair: tuple[Speedtest, Speedtest], download: bool
) -> None:
    alice, _ = pair
    report = (await alice.run(BOB, 3_000_000, download, timeout=10)).to_dict()
    assert report["direction"] == ("down" if download else "up")
    assert report["bytes"] == 3_000_000 and report["digests_match"] is True
    assert report["mb_per_s"] > 0
    assert alice._results == {}  # nothing kept once the test is over


def test_data_is_seeded_sized_and_marked() -> None:
    chunks = list(pseudo_random_data(600_000, seed=7, marker=b"MARK"))
    assert sum(map(len, chunks)) == 600_000
    assert all(chunk.startswith(b"MARK") for chunk in chunks)
    assert b"".join(chunks) == b"".join(pseudo_random_data(600_000, seed=7, marker=b"MARK"))
    with pytest.raises(SpeedtestRefused, match="a marker has at most 64 bytes"):
        next(pseudo_random_data(10, seed=7, marker=b"M" * 65))


def test_tally_refuses_more_and_reports_less_than_announced() -> None:
    tally = Tally(10)
    tally.feed(b"12345")
    with pytest.raises(SpeedtestRefused, match="ended after 5 of the 10 bytes announced"):
        tally.finish()
    with pytest.raises(SpeedtestRefused, match="sent more than the 10 bytes announced"):
        tally.feed(b"123456")
    tally.feed(b"67890")
    assert tally.finish().sha256 == hashlib.sha256(b"1234567890").digest()
    with pytest.raises(SpeedtestRefused, match=LIMIT):
        Tally(MAX_BYTES + 1)


async def test_over_the_limit_refused_on_both_sides(pair: tuple[Speedtest, Speedtest]) -> None:
    alice, _ = pair
    with pytest.raises(SpeedtestRefused, match=LIMIT):
        await alice.run(BOB, MAX_BYTES + 1, download=False, timeout=5)
    # a peer that asks for more than the limit, or announces more, is refused with the reason
    request = {"test": "t1", "bytes": MAX_BYTES + 1, "seed": 1, "marker": b""}
    with pytest.raises(RequestRefused, match=LIMIT):
        await alice.endpoint.request(BOB, SEND, msgpack.packb(request), 5)
    with pytest.raises(RequestRefused, match=LIMIT):
        await announced(alice.endpoint, "t2", MAX_BYTES + 1, b"x")


async def announced(endpoint: P2PEndpoint, test: str, size: int, data: bytes) -> None:
    header = msgpack.packb({"test": test, "bytes": size})
    stream = await endpoint.open_stream(BOB, STREAM, header)
    await stream.write(data)
    await stream.finish()


async def test_a_short_stream_is_reported_as_short(pair: tuple[Speedtest, Speedtest]) -> None:
    """The sender hears it at once (the stream is refused), and the result says it too."""
    alice, _ = pair
    short = "the stream ended after 10 of the 1000 bytes"
    with pytest.raises(RequestRefused, match=short):
        await announced(alice.endpoint, "short", 1000, b"x" * 10)
    with pytest.raises(RequestRefused, match=short):
        await alice.endpoint.request(BOB, RESULT, msgpack.packb({"test": "short"}), 5)


async def test_a_long_stream_is_reported_as_long(pair: tuple[Speedtest, Speedtest]) -> None:
    alice, _ = pair
    long = "sent more than the 10 bytes announced"
    with pytest.raises(RequestRefused, match=long):
        await announced(alice.endpoint, "long", 10, b"x" * 100)  # read whole, then checked
    with pytest.raises(RequestRefused, match=long):
        await alice.endpoint.request(BOB, RESULT, msgpack.packb({"test": "long"}), 5)


async def test_unknown_result_and_malformed_requests_refused(
    pair: tuple[Speedtest, Speedtest],
) -> None:
    alice, _ = pair
    with pytest.raises(RequestRefused, match="no speed test nope from you is known here"):
        await alice.endpoint.request(BOB, RESULT, msgpack.packb({"test": "nope"}), 5)
    with pytest.raises(RequestRefused, match="not msgpack"):
        await alice.endpoint.request(BOB, SEND, b"\xc1", 5)
    with pytest.raises(RequestRefused, match="integer seed"):
        await alice.endpoint.request(BOB, SEND, msgpack.packb({"test": "t", "bytes": 5}), 5)


async def test_one_download_served_per_peer_at_a_time(pair: tuple[Speedtest, Speedtest]) -> None:
    alice, _ = pair
    first, second = await asyncio.gather(
        alice.run(BOB, 20_000_000, download=True, timeout=10),
        alice.run(BOB, 1000, download=True, timeout=10),
        return_exceptions=True,
    )
    assert isinstance(first, Report) and first.digests_match
    assert isinstance(second, RequestRefused)
    assert str(second) == "a speed test to you is already running"


async def test_results_kept_are_bounded(pair: tuple[Speedtest, Speedtest]) -> None:
    alice, bob = pair
    for n in range(MAX_PENDING + 1):
        await announced(alice.endpoint, f"t{n}", 10, b"x" * 10)
    assert len(bob._results) == MAX_PENDING
    with pytest.raises(RequestRefused, match="no speed test t0 from you is known here"):
        await alice.endpoint.request(BOB, RESULT, msgpack.packb({"test": "t0"}), 5)
    answer = await alice.endpoint.request(
        BOB, RESULT, msgpack.packb({"test": f"t{MAX_PENDING}"}), 5
    )
    assert answer == msgpack.packb({"bytes": 10, "sha256": hashlib.sha256(b"x" * 10).digest()})
