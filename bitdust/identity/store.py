"""The identity server's files: what :mod:`bitdust.identity.policy` accepts, kept on disk.

:class:`IdentityStore` does blocking file I/O (reads, atomic writes with fsync, unlinks): the
asyncio shell in :mod:`bitdust.identity.server` calls :meth:`IdentityStore.submit` and
:meth:`IdentityStore.expire` in a worker thread, never on the event loop. It takes the clock as
an argument. The directory is scanned once, when the store opens; afterwards an in-memory index
(name -> size on disk, last touch) answers every count and listing in O(1) or from memory, and
the identities served most recently are kept in memory (a bounded cache, dropped whenever the store
changes that name): a busy identity is not read from disk, nor its HTTP validators recomputed, on
every request. The store owns its directory: like the index, the cache does not see a file changed
behind its back until the server restarts.

Each stored identity is ``<directory>/<name>.xml`` in the canonical form
(:meth:`~bitdust.identity.document.Identity.to_xml`), written atomically (temp file, fsync,
rename). Its mtime is the time it was last accepted or touched; :meth:`IdentityStore.expire`
removes those not touched for ``expiry_seconds``. Beyond the policy's rules a **new** name must
fit ``max_identities`` and ``max_bytes`` (sizes rounded up to the file system's 4 KiB blocks),
and its key and the submitting address must be within their hourly :class:`NewNameQuota`: a
flood of throwaway names cannot fill the disk. Every refusal is logged as one line (rate-limited,
never key material) and raised as :class:`~bitdust.identity.errors.IdentityRefused` with its
reason; a refusal leaves the directory exactly as it was.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bitdust.files import TEMP_SUFFIX, atomic_write
from bitdust.identity.document import MAX_DOCUMENT_SIZE, Identity
from bitdust.identity.errors import IdentityError, IdentityRefused, Refusal
from bitdust.identity.idurl import DEFAULT_HTTP_PORT, validate_name
from bitdust.identity.policy import IdentityPolicy, NewNameQuota, Verdict
from bitdust.logs import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_SECONDS = 30 * 24 * 3600
DEFAULT_MAX_IDENTITIES = 100_000
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # 1 GiB: ~250,000 identities of BitDust's usual ~3 KB
NEW_NAMES_PER_KEY_PER_HOUR = 3  # one key is one account; a few names allow a rename or a retry
NEW_NAMES_PER_ADDRESS_PER_HOUR = 30  # many users may share one address (NAT)
QUOTA_WINDOW = 3600.0
BLOCK_SIZE = 4096
ACCEPTED_LINES_PER_MINUTE = 60
FILE_SUFFIX = ".xml"
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024  # some 3,000 identities of ~3 KB: the ones in demand


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """One stored identity as served over HTTP, its validators computed once (a cached copy
    answers many requests)."""

    name: str
    data: bytes
    mtime: float  # when it was last accepted or touched (seconds since the epoch)
    #: a strong HTTP entity tag of the content (quoted)
    etag: str = field(init=False)
    #: ``mtime`` as an HTTP date, for ``Last-Modified``
    last_modified: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"')
        object.__setattr__(self, "last_modified", email.utils.formatdate(self.mtime, usegmt=True))


@dataclass(slots=True)
class _Entry:
    disk_bytes: int
    mtime: float


class IdentityStore:
    """Identities held by one identity server, in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        host: str,
        public_port: int = DEFAULT_HTTP_PORT,
        *,
        size_limit: int = MAX_DOCUMENT_SIZE,
        expiry_seconds: float = DEFAULT_EXPIRY_SECONDS,
        accept_legacy: bool = False,
        max_identities: int = DEFAULT_MAX_IDENTITIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        new_names_per_key: int = NEW_NAMES_PER_KEY_PER_HOUR,
        new_names_per_address: int = NEW_NAMES_PER_ADDRESS_PER_HOUR,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.policy = IdentityPolicy(
            host, public_port, size_limit=size_limit, accept_legacy=accept_legacy
        )
        if expiry_seconds <= 0:
            raise IdentityError(f"identity expiry {expiry_seconds!r} must be positive seconds")
        self.directory = Path(directory)
        self.expiry_seconds = float(expiry_seconds)
        self.max_identities = max_identities
        self.max_bytes = max_bytes
        self.key_quota = NewNameQuota(new_names_per_key, QUOTA_WINDOW)
        self.address_quota = NewNameQuota(new_names_per_address, QUOTA_WINDOW)
        # what clients cause is logged bounded: a flood of refusals or re-sends is a few lines
        self._refusals = RateLimitedLog(log)
        self._acceptances = RateLimitedLog(log, burst=ACCEPTED_LINES_PER_MINUTE)
        self._lock = threading.Lock()  # the index is read on the event loop, changed in a worker
        # identities served lately, least recently used first, within cache_bytes
        self._cache: collections.OrderedDict[str, StoredIdentity] = collections.OrderedDict()
        self._cache_bytes = 0
        self.cache_limit = cache_bytes
        # bumped (under the lock) by every write, touch and removal: a disk read that raced one
        # may be stale and is not cached
        self._changes = 0
        #: what the server did, for `/metrics`: answers served over HTTP, identities accepted by
        #: verdict and refused by rule (counted in the one worker thread, read on the loop)
        self.served = 0
        self.accepted: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index = self._scan()
        self.names_generation = 0  # changes whenever a name is added or removed
        self._bytes = sum(entry.disk_bytes for entry in self._index.values())

    # -- settings the policy holds ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.policy.host

    @property
    def public_port(self) -> int:
        return self.policy.public_port

    @property
    def size_limit(self) -> int:
        return self.policy.size_limit

    @property
    def accept_legacy(self) -> bool:
        return self.policy.accept_legacy

    @accept_legacy.setter
    def accept_legacy(self, value: bool) -> None:
        self.policy.accept_legacy = value

    # -- queries ---------------------------------------------------------------------------------

    def idurl_for(self, name: str) -> str:
        """The IDURL this server serves ``name`` at."""
        return self.policy.idurl_for(name)

    def names(self) -> list[str]:
        """Names of the stored identities, sorted (from memory)."""
        with self._lock:
            return sorted(self._index)

    def count(self) -> int:
        """How many identities are stored."""
        return len(self._index)

    def stored_bytes(self) -> int:
        """Bytes the stored identities take on disk (sizes rounded up to whole blocks)."""
        return self._bytes

    def lookup(self, name: str) -> StoredIdentity | None:
        """The stored identity ``name`` with its mtime, or ``None``; from the cache when it is
        there, else read from disk (and cached)."""
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None:
                self._cache.move_to_end(name)
                return cached
            changes = self._changes
        path = self._path(name)
        if path is None:
            return None
        # a miss is most of a request's cost once the identities outnumber the cache: plain
        # descriptors and a str path take a third of the time of open() and pathlib
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            mtime = os.fstat(descriptor).st_mtime
            data = os.read(descriptor, MAX_DOCUMENT_SIZE + 1)
        except OSError:
            return None
        finally:
            os.close(descriptor)
        stored = StoredIdentity(name=name, data=data, mtime=mtime)
        with self._lock:
            if changes == self._changes and len(data) <= self.cache_limit:
                self._cache[name] = stored
                self._cache_bytes += len(data)
                while self._cache_bytes > self.cache_limit:
                    self._cache_bytes -= len(self._cache.popitem(last=False)[1].data)
        return stored

    def get(self, name: str) -> bytes | None:
        """The stored XML of ``name``, or ``None``."""
        stored = self.lookup(name)
        return stored.data if stored is not None else None

    # -- submission ------------------------------------------------------------------------------

    def submit(self, data: bytes, now: float, peer: str | None = None) -> Identity:
        """Store ``data`` if every rule holds; returns the accepted :class:`Identity`.

        ``now`` is the wall-clock time (seconds since the epoch) recorded as the identity's last
        touch; ``peer`` is the submitting address (its new names count against its quota).
        Raises :class:`IdentityRefused` with the reason otherwise; nothing is changed then.
        Blocking (file I/O, signature check): call it from a worker thread in async code.
        """
        source = peer or "local"
        try:
            identity, verdict = self._accept(data, now, source)
        except IdentityRefused as refusal:
            self.refused[refusal.kind.value] += 1
            self._refusals.warning("identity refused from %s: %s", source, refusal.reason)
            raise
        self.accepted[verdict.value] += 1
        self._acceptances.info(
            "identity %s from %s: %s revision %d",
            verdict.value,
            source,
            identity.name,
            identity.revision,
        )
        return identity

    def _accept(self, data: bytes, now: float, source: str) -> tuple[Identity, Verdict]:
        identity = self.policy.parse(data)
        name = identity.name
        path = self.directory / f"{name}{FILE_SUFFIX}"
        stored = self.lookup(name)
        admission = self.policy.judge(identity, stored.data if stored is not None else None)
        if admission.verdict is Verdict.TOUCH:
            self._touch(name, path, now)
            return identity, admission.verdict
        size = _disk_bytes(len(admission.canonical))
        previous_size = self._index[name].disk_bytes if name in self._index else 0
        if self._bytes - previous_size + size > self.max_bytes:
            raise IdentityRefused(
                Refusal.SERVER_FULL,
                f"this server is full ({self.max_bytes} bytes of identities); try another server",
            )
        if admission.verdict is Verdict.STORE:
            if len(self._index) >= self.max_identities:
                raise IdentityRefused(
                    Refusal.SERVER_FULL,
                    f"this server is full ({self.max_identities} identities); try another server",
                )
            if not self.key_quota.allows(admission.key_id, now):
                raise IdentityRefused(
                    Refusal.QUOTA,
                    f"this key registered {self.key_quota.limit} new names in the last hour on "
                    "this server; try again later",
                )
            if not self.address_quota.allows(source, now):
                raise IdentityRefused(
                    Refusal.QUOTA,
                    f"{self.address_quota.limit} new names came from {source} in the last hour; "
                    "try again later",
                )
        try:
            atomic_write(path, admission.canonical, mode=0o644, overwrite=True, error=IdentityError)
        except IdentityError as exc:
            log.error("cannot store identity %s: %s", name, exc.message)
            raise IdentityRefused(
                Refusal.CANNOT_STORE, "this server cannot store identities right now"
            ) from None
        if admission.verdict is Verdict.STORE:
            self.key_quota.record(admission.key_id, now)
            self.address_quota.record(source, now)
        with self._lock:
            self._forget(name)
            if name not in self._index:
                self.names_generation += 1
            self._index[name] = _Entry(size, now)
            self._bytes += size - previous_size
        self._touch(name, path, now)
        return identity, admission.verdict

    # -- expiry ----------------------------------------------------------------------------------

    def expire(self, now: float) -> list[str]:
        """Remove identities not accepted or touched for ``expiry_seconds``; returns their names.
        Blocking (unlinks): call it from a worker thread in async code."""
        with self._lock:
            due = sorted(
                name
                for name, entry in self._index.items()
                if now - entry.mtime >= self.expiry_seconds
            )
        removed = []
        for name in due:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{name}{FILE_SUFFIX}").unlink()
            with self._lock:
                self._forget(name)
                entry = self._index.pop(name)
                self._bytes -= entry.disk_bytes
                self.names_generation += 1
            removed.append(name)
            log.info("identity %s expired (untouched for %.0f s)", name, now - entry.mtime)
        return removed

    # -- internals -------------------------------------------------------------------------------

    def _path(self, name: str) -> str | None:
        try:
            validate_name(name)
        except IdentityError:
            return None
        return f"{self.directory}/{name}{FILE_SUFFIX}"

    def _touch(self, name: str, path: Path, now: float) -> None:
        with contextlib.suppress(OSError):
            os.utime(path, (now, now))
        with self._lock:
            self._forget(name)
            self._index[name].mtime = now

    def _forget(self, name: str) -> None:
        """Drop ``name``'s cached copy: its file changed (call with the lock held)."""
        self._changes += 1
        cached = self._cache.pop(name, None)
        if cached is not None:
            self._cache_bytes -= len(cached.data)

    def _scan(self) -> dict[str, _Entry]:
        """The index of the directory (the one scan); stale temp files are removed."""
        index = {}
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            if not entry.name.endswith(FILE_SUFFIX) or entry.name.startswith("."):
                continue
            name = entry.name[: -len(FILE_SUFFIX)]
            try:
                validate_name(name)
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except (IdentityError, OSError):
                continue
            index[name] = _Entry(_disk_bytes(stat.st_size), stat.st_mtime)
        return index


def _disk_bytes(size: int) -> int:
    return max(1, -(-size // BLOCK_SIZE)) * BLOCK_SIZE
