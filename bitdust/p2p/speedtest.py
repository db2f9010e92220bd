"""A p2p stream speed test between this node and a peer, like iperf: the operator's way to see
what a session (direct or through a router) carries, and the tests' way to stream real data.

Upload: this node opens a ``p2p/speedtest`` stream announcing its size, sends that many
pseudo-random bytes, then asks the peer (``p2p/speedtest/result``) how many bytes it read and
their SHA-256. Download: this node asks the peer (``p2p/speedtest/send``) to open such a stream
back over the same session; the answer is the size and digest of what the peer sent. Either way
the receiver only counts and hashes (:class:`Tally`), and the sender compares.

Bounded: at most :data:`MAX_BYTES` per test, one download served per peer at a time, and at most
:data:`MAX_PENDING` results kept waiting to be asked for. An optional marker is written at the
start of every chunk, so a test can look for known plaintext on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from bitdust.p2p.errors import P2PError

if TYPE_CHECKING:
    from bitdust.p2p.transport import IncomingStream, P2PEndpoint

STREAM = "p2p/speedtest"
RESULT = "p2p/speedtest/result"
SEND = "p2p/speedtest/send"

MAX_BYTES = 1024**3  # 1 GiB: a test is a measurement, not a way to make a peer send for ever
MAX_MARKER = 64
CHUNK = 256 * 1024
MAX_PENDING = 16
#: How long the result of a stream may take to show up once its sender saw it read whole.
RESULT_WAIT = 10.0


class SpeedtestRefused(P2PError):
    """A speed test was refused or failed; the message says why."""


@dataclass(frozen=True)
class Digest:
    """What one side sent or received: a byte count and the SHA-256 of those bytes."""

    size: int
    sha256: bytes

    def encode(self) -> bytes:
        return msgpack.packb({"bytes": self.size, "sha256": self.sha256})

    @classmethod
    def decode(cls, data: bytes) -> Digest:
        fields = _decode(data)
        size, sha256 = fields.get("bytes"), fields.get("sha256")
        if type(size) is not int or not isinstance(sha256, bytes) or len(sha256) != 32:
            raise SpeedtestRefused("the peer's speed test result is malformed")
        return cls(size, sha256)


def check_size(size: object) -> int:
    """The number of bytes a test may move (SpeedtestRefused otherwise)."""
    if type(size) is not int or not 1 <= size <= MAX_BYTES:
        raise SpeedtestRefused(f"a speed test moves 1 to {MAX_BYTES} bytes, not {size!r}")
    return size


def pseudo_random_data(size: int, seed: int, marker: bytes = b"") -> Iterator[bytes]:
    """``size`` pseudo-random bytes from ``seed`` in chunks, each starting with ``marker``."""
    check_size(size)
    if len(marker) > MAX_MARKER:
        raise SpeedtestRefused(f"a marker has at most {MAX_MARKER} bytes")
    generator = random.Random(seed)
    left = size
    while left:
        chunk = (marker + generator.randbytes(CHUNK - len(marker)))[:left]
        left -= len(chunk)
        yield chunk


class Tally:
    """The receiving side of one test: counts and hashes, refuses more than announced."""

    def __init__(self, announced: int) -> None:
        self.announced = check_size(announced)
        self.received = 0
        self._hash = hashlib.sha256()

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.received + len(chunk) > self.announced:
            raise SpeedtestRefused(f"the peer sent more than the {self.announced} bytes announced")
        self.received += len(chunk)
        self._hash.update(chunk)

    def finish(self) -> Digest:
        """The digest of a stream that ended; SpeedtestRefused when it was short."""
        if self.received != self.announced:
            raise SpeedtestRefused(
                f"the stream ended after {self.received} of the {self.announced} bytes announced"
            )
        return Digest(self.received, self._hash.digest())


@dataclass(frozen=True)
class Report:
    idurl: str
    direction: str  # "up" (this node sent) or "down"
    size: int
    seconds: float
    digests_match: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "idurl": self.idurl,
            "direction": self.direction,
            "bytes": self.size,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.size / 1e6 / max(self.seconds, 1e-9), 2),
            "digests_match": self.digests_match,
        }


class Speedtest:
    """Serves the peer's side of tests on ``endpoint`` and runs this node's tests."""

    def __init__(self, endpoint: P2PEndpoint) -> None:
        self.endpoint = endpoint
        self._results: OrderedDict[tuple[str, str], asyncio.Future[Digest]] = OrderedDict()
        self._receiving: set[tuple[str, str]] = set()
        self._serving: set[str] = set()
        endpoint.on_stream(STREAM, self._receive)
        endpoint.on_request(RESULT, self._answer_result)
        endpoint.on_request(SEND, self._send_back)

    # -- this node's tests ----------------------------------------------------------------------

    async def run(
        self, idurl: str, size: int, download: bool, timeout: float, marker: bytes = b""
    ) -> Report:
        """Move ``size`` bytes to (or, ``download``, from) ``idurl`` and time it. Raises
        SpeedtestRefused and the other P2PError subclasses; the caller bounds it in time too
        (``timeout`` is the requests')."""
        check_size(size)
        test = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if download:
            received = self._expect(idurl, test)
            request = {"test": test, "bytes": size, "seed": secrets.randbits(32), "marker": marker}
            try:
                answer = await self.endpoint.request(idurl, SEND, msgpack.packb(request), timeout)
                sent, got = Digest.decode(answer), await received
            finally:
                self._results.pop((idurl, test), None)
        else:
            sent = await self._send(idurl, test, size, secrets.randbits(32), marker)
            result = msgpack.packb({"test": test})
            answer = await self.endpoint.request(idurl, RESULT, result, timeout)
            got = Digest.decode(answer)
        seconds = loop.time() - started
        return Report(idurl, "down" if download else "up", size, seconds, got == sent)

    async def _send(self, idurl: str, test: str, size: int, seed: int, marker: bytes) -> Digest:
        chunks = pseudo_random_data(size, seed, marker)  # checked before anything is opened
        digest = hashlib.sha256()
        header = msgpack.packb({"test": test, "bytes": size})
        stream = await self.endpoint.open_stream(idurl, STREAM, header)
        for chunk in chunks:
            digest.update(chunk)
            await stream.write(chunk)
        await stream.finish()
        return Digest(size, digest.digest())

    def _expect(self, peer: str, test: str) -> asyncio.Future[Digest]:
        """The future a stream ``test`` from ``peer`` settles; the oldest waiting one is
        dropped when too many wait."""
        key = (peer, test)
        future = self._results.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._results[key] = future
            while len(self._results) > MAX_PENDING:
                (oldest_peer, oldest_test), oldest = self._results.popitem(last=False)
                dropped = f"speed test {oldest_test} with {oldest_peer} dropped: "
                _settle(oldest, SpeedtestRefused(dropped + f"{MAX_PENDING} more are waiting"))
        return future

    # -- the peer's side ------------------------------------------------------------------------

    async def _receive(self, peer: str, stream: IncomingStream) -> None:
        try:
            header = _decode(stream.header)
            test, tally = _test_id(header), Tally(check_size(header.get("bytes")))
        except SpeedtestRefused as exc:
            stream.refuse(str(exc))
            return
        key = (peer, test)
        if key in self._receiving or (key in self._results and self._results[key].done()):
            stream.refuse(f"speed test {test} was already sent")
            return
        future = self._expect(peer, test)
        self._receiving.add(key)
        try:
            async for chunk in stream:
                tally.feed(chunk)
            outcome = tally.finish()
        except SpeedtestRefused as exc:
            stream.refuse(str(exc))
            _settle(future, exc)
        except P2PError as exc:
            _settle(future, SpeedtestRefused(f"the stream failed: {exc}"))
        else:
            _settle(future, outcome)
        finally:
            self._receiving.discard(key)

    async def _answer_result(self, peer: str, data: bytes) -> bytes:
        test = _test_id(_decode(data))
        future = self._results.get((peer, test))
        if future is None:
            raise SpeedtestRefused(f"no speed test {test} from you is known here")
        try:
            async with asyncio.timeout(RESULT_WAIT):
                digest = await asyncio.shield(future)
        except TimeoutError:
            raise SpeedtestRefused(f"speed test {test} did not end in {RESULT_WAIT:g} s") from None
        finally:
            if future.done():
                self._results.pop((peer, test), None)
        return digest.encode()

    async def _send_back(self, peer: str, data: bytes) -> bytes:
        fields = _decode(data)
        test, size = _test_id(fields), check_size(fields.get("bytes"))
        seed, marker = fields.get("seed"), fields.get("marker", b"")
        if type(seed) is not int or not isinstance(marker, bytes):
            raise SpeedtestRefused("a speed test request needs an integer seed and bytes marker")
        if peer in self._serving:
            raise SpeedtestRefused("a speed test to you is already running")
        self._serving.add(peer)
        try:
            return (await self._send(peer, test, size, seed, marker)).encode()
        finally:
            self._serving.discard(peer)


def _decode(data: bytes) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(data, raw=False, max_bin_len=MAX_MARKER, max_str_len=64)
    except Exception:  # msgpack raises several types for bytes that are not one message
        raise SpeedtestRefused("a speed test message is not msgpack") from None
    if not isinstance(fields, dict):
        raise SpeedtestRefused("a speed test message is not a map")
    return fields


def _test_id(fields: dict[str, Any]) -> str:
    test = fields.get("test")
    if not isinstance(test, str) or not 1 <= len(test) <= 32:
        raise SpeedtestRefused("a speed test message has no valid test id")
    return test


def _settle(future: asyncio.Future[Digest], outcome: Digest | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
        future.exception()  # nobody may ask: do not log it as never retrieved
    else:
        future.set_result(outcome)
