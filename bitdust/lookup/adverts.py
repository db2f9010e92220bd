"""What a node that offers a role publishes in the DHT, and the bounded decoder of it.

A node advertises a role in two records, both signed with its identity key:

- its **advert**, under its *owned* key ``bitdust/lookup/v1/<role>`` (only that identity can
  write there, and readers look it up by IDURL, so the IDURL is proven by the key): the role,
  what finders need to use it (``info``, e.g. a router's contact) and when it was published;
- an **index entry** under the shared key ``bitdust/lookup/v1/<role>/index/<bucket>``: an empty
  value whose owner IDURL (shown only when proven by the identity's key) names the candidate.

A shared key holds 16 records, at most 2 per source /24, so one index key would show finders 16
candidates at most. Each identity writes to one of ``INDEX_BUCKETS`` keys, chosen by a hash of its
IDURL (stable, so re-advertising replaces its own entry instead of adding one), and finders read
a few buckets in random order. Nothing here trusts what it reads: ``decode_advert`` refuses
anything malformed, oversized or of another role, with a typed reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bitdust.dht.service import DHTService
from bitdust.node.service import ServiceError, ServiceUnavailable

log = logging.getLogger(__name__)

NAMESPACE = "bitdust/lookup/v1"
FORMAT_VERSION = 1
INDEX_BUCKETS = 8
ADVERT_AGE = 30 * 60  # seconds an advert (or a withdrawal notice) lives unless refreshed
REFRESH_INTERVAL = 10 * 60  # how often an advertiser should call advertise() again
FIRST_RETRY, MAX_RETRY = 1.0, 30.0  # seconds before a failed advert is tried again (doubling)
WITHDRAW_WAIT = 1.0  # a stopping service waits this long at most to withdraw its advert
MAX_ADVERT = 2048
MAX_INFO_ENTRIES = 16
MAX_INFO_KEY = 32
MAX_INFO_TEXT = 256
MAX_TIMESTAMP = 2**40

InfoValue = str | int | bool


class Role(enum.StrEnum):
    """A service a node offers to others through nodes-lookup."""

    ROUTER = "proxy-router"
    SUPPLIER = "supplier"


class Defect(enum.StrEnum):
    """Why an advert read from the DHT was refused."""

    TOO_LARGE = "too large"
    NOT_MSGPACK = "not msgpack"
    NOT_A_MAP = "not a map of known fields"
    BAD_VERSION = "unknown format version"
    WRONG_ROLE = "another role"
    BAD_TIMESTAMP = "bad timestamp"
    BAD_INFO = "bad info"
    BAD_WITHDRAWN = "bad withdrawn flag"


class NotPublished(ServiceError):
    """No DHT node took the advert (this node has not joined, or a record of the same second
    is already there): try again shortly."""


class MalformedAdvert(ValueError):
    """An advert from outside breaks the format; ``defect`` says how."""

    def __init__(self, defect: Defect, detail: str = "") -> None:
        super().__init__(f"advert refused: {defect.value}" + (f" ({detail})" if detail else ""))
        self.defect = defect


@dataclass(frozen=True, slots=True)
class Advert:
    """One node's offer of ``role``; ``info`` is what finders need to use it."""

    role: Role
    info: Mapping[str, InfoValue] = field(default_factory=dict)
    published: int = 0  # Unix seconds
    withdrawn: bool = False


def advert_name(role: Role) -> str:
    """The owned-key name of an identity's advert of ``role``."""
    return f"{NAMESPACE}/{role.value}"


def index_name(role: Role, bucket: int) -> str:
    """The shared key of one index bucket of ``role``."""
    return f"{NAMESPACE}/{role.value}/index/{bucket}"


def bucket_of(idurl: str) -> int:
    """The index bucket an identity writes to: stable, so its entry is replaced, not added."""
    return int.from_bytes(hashlib.sha256(idurl.encode("utf-8")).digest()[:4]) % INDEX_BUCKETS


def check_info(info: Mapping[str, Any]) -> dict[str, InfoValue]:
    """``info`` as an advert may carry it, or MalformedAdvert(BAD_INFO) saying what is wrong."""
    if not isinstance(info, Mapping) or len(info) > MAX_INFO_ENTRIES:
        raise MalformedAdvert(Defect.BAD_INFO, f"expected a map of at most {MAX_INFO_ENTRIES}")
    out: dict[str, InfoValue] = {}
    for key, value in info.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_INFO_KEY:
            raise MalformedAdvert(Defect.BAD_INFO, f"keys are 1..{MAX_INFO_KEY} characters")
        if isinstance(value, str):
            if len(value) > MAX_INFO_TEXT:
                raise MalformedAdvert(Defect.BAD_INFO, f"{key!r}: over {MAX_INFO_TEXT} characters")
        elif type(value) is int:
            if not -(2**63) <= value < 2**63:
                raise MalformedAdvert(Defect.BAD_INFO, f"{key!r}: integer out of range")
        elif type(value) is not bool:
            raise MalformedAdvert(Defect.BAD_INFO, f"{key!r}: expected text, integer or boolean")
        out[key] = value
    return out


def encode_advert(advert: Advert) -> bytes:
    """The advert's bytes for the DHT; MalformedAdvert when it would not decode back."""
    data = msgpack.packb(
        {
            "v": FORMAT_VERSION,
            "r": advert.role.value,
            "i": check_info(advert.info),
            "t": advert.published,
            "w": advert.withdrawn,
        },
        use_bin_type=True,
    )
    if len(data) > MAX_ADVERT:
        raise MalformedAdvert(Defect.TOO_LARGE, f"{len(data)} bytes > {MAX_ADVERT}")
    return data


def decode_advert(data: bytes, role: Role) -> Advert:
    """The advert of ``role`` in ``data`` (a DHT value), or MalformedAdvert saying why not."""
    if len(data) > MAX_ADVERT:
        raise MalformedAdvert(Defect.TOO_LARGE, f"{len(data)} bytes > {MAX_ADVERT}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_ADVERT,
            max_bin_len=0,
            max_array_len=0,
            max_map_len=MAX_INFO_ENTRIES,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ValueError...)
        raise MalformedAdvert(Defect.NOT_MSGPACK, type(exc).__name__) from None
    if not isinstance(obj, dict) or set(obj) != {"v", "r", "i", "t", "w"}:
        raise MalformedAdvert(Defect.NOT_A_MAP)
    if type(obj["v"]) is not int or obj["v"] != FORMAT_VERSION:
        raise MalformedAdvert(Defect.BAD_VERSION, repr(obj["v"])[:32])
    if obj["r"] != role.value:
        raise MalformedAdvert(Defect.WRONG_ROLE, f"expected {role.value!r}")
    if type(obj["t"]) is not int or not 0 <= obj["t"] < MAX_TIMESTAMP:
        raise MalformedAdvert(Defect.BAD_TIMESTAMP)
    if type(obj["w"]) is not bool:
        raise MalformedAdvert(Defect.BAD_WITHDRAWN)
    return Advert(role, check_info(obj["i"]), obj["t"], obj["w"])


def own_idurl(dht: DHTService) -> str:
    """The IDURL this node's records are signed for; ServiceError when it has no identity."""
    try:
        current = getattr(dht.node.service("identity-propagate"), "current", None)
    except (ServiceUnavailable, KeyError):
        current = None
    if current is None:
        raise ServiceError("this node has no identity to advertise with: create one first")
    return str(current.identity.idurl)


async def advertise(dht: DHTService, role: Role, info: Mapping[str, Any]) -> None:
    """Publish (or refresh) this node's advert of ``role`` and its index entry. Call it again
    every ``REFRESH_INTERVAL``, and sooner after NotPublished; ServiceError (NotPublished is
    one) or MalformedAdvert say what stops it."""
    idurl = own_idurl(dht)
    advert = Advert(role, check_info(info), int(time.time()))
    await _put(dht, role, advert_name(role), encode_advert(advert), owned=True)
    await _put(dht, role, index_name(role, bucket_of(idurl)), b"", owned=False)


async def withdraw(dht: DHTService, role: Role) -> None:
    """Replace this node's advert of ``role`` with a withdrawal notice, which finders skip. It
    lives as long as an advert, so no older copy a node still holds can outlive it; the index
    entry ages out meanwhile. Raises as ``advertise`` does."""
    own_idurl(dht)
    notice = Advert(role, {}, int(time.time()), withdrawn=True)
    await _put(dht, role, advert_name(role), encode_advert(notice), owned=True)


async def _put(dht: DHTService, role: Role, name: str, value: bytes, owned: bool) -> None:
    """One record on at least one other node. Records carry whole seconds: a second one within
    the same second conflicts with the first and is refused."""
    age = min(ADVERT_AGE, dht.dht.node.settings.max_age)
    if not await dht.set_value(name, value, age=age, owned=owned):
        raise NotPublished(f"no DHT node took this node's {role.value} advert yet: retry shortly")


class Advertiser:
    """Keeps this node's advert of ``role`` fresh while a service offers it (routers and
    suppliers alike): published at ``start``, refreshed every ``REFRESH_INTERVAL`` with what
    ``info()`` says then, and withdrawn at ``stop``. A failure (no identity yet, the DHT not
    joined) is retried, sooner at first, and logged once until its reason changes."""

    def __init__(self, dht: DHTService, role: Role, info: Callable[[], Mapping[str, Any]]) -> None:
        self.dht = dht
        self.role = role
        self.info = info
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_advertised())

    async def stop(self) -> None:
        """Stop refreshing and withdraw the advert, waiting ``WITHDRAW_WAIT`` at most: a node
        that cannot reach the DHT still stops at once (its advert then ages out)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # no refresh may land after the withdrawal
            self._task = None
        with contextlib.suppress(ServiceError, OSError, TimeoutError):
            async with asyncio.timeout(WITHDRAW_WAIT):
                await withdraw(self.dht, self.role)

    async def _keep_advertised(self) -> None:
        retry, failure = FIRST_RETRY, ""
        while True:
            try:
                await advertise(self.dht, self.role, self.info())
            except Exception as exc:  # the DHT or the identity not ready yet: try again soon
                level = logging.DEBUG if str(exc) == failure else logging.WARNING
                log.log(level, "cannot advertise this node's %s role yet: %s", self.role, exc)
                failure = str(exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, MAX_RETRY)
            else:
                if failure:
                    log.info("advertising this node's %s role", self.role)
                retry, failure = FIRST_RETRY, ""
                await asyncio.sleep(REFRESH_INTERVAL)
