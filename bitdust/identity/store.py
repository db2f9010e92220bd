"""The identity server's storage policy: what it accepts, what it keeps, when it forgets.

:class:`IdentityStore` is sans-IO with respect to the network (the asyncio shells in
:mod:`bitdust.identity.server` feed it bytes) and takes the clock as an argument. It stores an
identity only when every rule holds, checked in this order:

1. it fits the size limit (checked before parsing);
2. it parses (:func:`~bitdust.identity.document.parse_identity`: hardened, no DTD/entities);
3. its signature verifies (:func:`~bitdust.identity.signing.verify`; BitDust's legacy scheme only
   when ``accept_legacy``);
4. one of its sources is this server: ``http://<host>[:<public_port>]/<name>.xml``, host *and* port.
   ``public_port`` is the HTTP port written in IDURLs — 80 when nginx fronts the server, otherwise
   the identity server's own ``web-port``;
5. when the name is already stored: the public key is the same (no key takeover) and the revision
   is higher. An equal revision with the same content (every field and the scheme; the signature
   may differ, as PSS signatures are randomized) is a **touch**: the stored file is kept as it is,
   its expiry is refreshed, and it counts as accepted (a node re-sends its unchanged identity to
   keep it alive). An equal revision with different content is refused;
6. a new name fits ``max_identities``.

Each stored identity is ``<directory>/<name>.xml`` in the canonical form
(:meth:`~bitdust.identity.document.Identity.to_xml`), written atomically (temp file, fsync,
rename). Its mtime is the time it was last accepted or touched; :meth:`IdentityStore.expire` removes
those not touched for ``expiry_seconds``. Every refusal is logged as one line (never key material)
and raised as :class:`~bitdust.identity.errors.IdentityRefused` with its reason; a refusal leaves
the directory exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bitdust.files import TEMP_SUFFIX, atomic_write
from bitdust.identity.document import MAX_DOCUMENT_SIZE, Identity, parse_identity
from bitdust.identity.errors import IdentityError, IdentityRefused
from bitdust.identity.idurl import (
    DEFAULT_HTTP_PORT,
    format_idurl,
    validate_host,
    validate_name,
    validate_port,
)
from bitdust.identity.signing import verify

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_SECONDS = 30 * 24 * 3600
DEFAULT_MAX_IDENTITIES = 100_000
FILE_SUFFIX = ".xml"


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """One stored identity as served over HTTP."""

    name: str
    data: bytes
    mtime: float  # when it was last accepted or touched (seconds since the epoch)

    @property
    def etag(self) -> str:
        """A strong HTTP entity tag of the content (quoted)."""
        return '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'


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
    ) -> None:
        self.directory = Path(directory)
        self.host = validate_host(host)
        self.public_port = validate_port(public_port)
        if not 1 <= size_limit <= MAX_DOCUMENT_SIZE:
            raise IdentityError(
                f"identity size limit {size_limit!r} must be 1-{MAX_DOCUMENT_SIZE} bytes"
            )
        if expiry_seconds <= 0:
            raise IdentityError(f"identity expiry {expiry_seconds!r} must be positive seconds")
        self.size_limit = size_limit
        self.expiry_seconds = float(expiry_seconds)
        self.accept_legacy = accept_legacy
        self.max_identities = max_identities
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    # -- queries ---------------------------------------------------------------------------------

    def idurl_for(self, name: str) -> str:
        """The IDURL this server serves ``name`` at."""
        return format_idurl(self.host, self.public_port, name)

    def names(self) -> list[str]:
        """Names of the stored identities, sorted."""
        names = []
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        for entry in entries:
            if not entry.name.endswith(FILE_SUFFIX) or entry.name.startswith("."):
                continue
            name = entry.name[: -len(FILE_SUFFIX)]
            try:
                validate_name(name)
            except IdentityError:
                continue
            if entry.is_file(follow_symlinks=False):
                names.append(name)
        return sorted(names)

    def lookup(self, name: str) -> StoredIdentity | None:
        """The stored identity ``name`` with its mtime, or ``None``."""
        path = self._path(name)
        if path is None:
            return None
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                data = handle.read(MAX_DOCUMENT_SIZE + 1)
        except OSError:
            return None
        return StoredIdentity(name=name, data=data, mtime=stat.st_mtime)

    def get(self, name: str) -> bytes | None:
        """The stored XML of ``name``, or ``None``."""
        stored = self.lookup(name)
        return stored.data if stored is not None else None

    # -- submission ------------------------------------------------------------------------------

    def submit(self, data: bytes, now: float, peer: str | None = None) -> Identity:
        """Store ``data`` if every rule holds; returns the accepted :class:`Identity`.

        ``now`` is the wall-clock time (seconds since the epoch) recorded as the identity's last
        touch. Raises :class:`IdentityRefused` with the reason otherwise; nothing is changed then.
        """
        try:
            identity, action = self._accept(data, now)
        except IdentityRefused as refusal:
            log.warning("identity refused from %s: %s", peer or "local", refusal.reason)
            raise
        log.info(
            "identity %s from %s: %s revision %d",
            action,
            peer or "local",
            identity.name,
            identity.revision,
        )
        return identity

    def _accept(self, data: bytes, now: float) -> tuple[Identity, str]:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise IdentityRefused("malformed identity: not bytes")
        if len(data) > self.size_limit:
            raise IdentityRefused(
                f"identity is {len(data)} bytes; this server accepts at most {self.size_limit}"
            )
        try:
            identity = parse_identity(bytes(data))
        except IdentityError as exc:
            raise IdentityRefused(f"malformed identity: {exc.message}") from None
        try:
            verify(identity, self.accept_legacy)
        except IdentityError as exc:
            raise IdentityRefused(f"bad signature: {exc.message}") from None
        name = identity.name
        expected = self.idurl_for(name)
        if not any(idurl.server == (self.host, self.public_port) for idurl in identity.idurls):
            raise IdentityRefused(
                f"none of the identity's sources is on this server: expected {expected} among "
                f"{', '.join(identity.sources)}"
            )
        canonical = identity.to_xml()
        if len(canonical) > self.size_limit:
            raise IdentityRefused(
                f"identity is {len(canonical)} bytes once normalised; this server accepts at most "
                f"{self.size_limit}"
            )
        path = self.directory / f"{name}{FILE_SUFFIX}"
        stored = self.lookup(name)
        if stored is not None:
            try:
                previous = parse_identity(stored.data)
            except IdentityError as exc:
                log.error("stored identity %s is unreadable: %s", path, exc.message)
                raise IdentityRefused(
                    f"the stored copy of {name} is unreadable on this server; ask its operator"
                ) from None
            if previous.public_key.public_numbers() != identity.public_key.public_numbers():
                raise IdentityRefused(
                    f"key takeover refused: {name} is already registered on this server with "
                    "another public key"
                )
            if identity.revision < previous.revision:
                raise IdentityRefused(
                    f"revision {identity.revision} of {name} is older than the stored revision "
                    f"{previous.revision}"
                )
            if identity.revision == previous.revision:
                if identity.unsigned() != previous.unsigned():
                    raise IdentityRefused(
                        f"revision {identity.revision} of {name} is already stored with different "
                        "content: publish a higher revision"
                    )
                self._touch(path, now)
                return identity, "touched"
            action = "updated"
        else:
            if len(self.names()) >= self.max_identities:
                raise IdentityRefused(
                    f"this server is full ({self.max_identities} identities); try another server"
                )
            action = "stored"
        try:
            atomic_write(path, canonical, mode=0o644, overwrite=True, error=IdentityError)
        except IdentityError as exc:
            log.error("cannot store identity %s: %s", name, exc.message)
            raise IdentityRefused("this server cannot store identities right now") from None
        self._touch(path, now)
        return identity, action

    # -- expiry ----------------------------------------------------------------------------------

    def expire(self, now: float) -> list[str]:
        """Remove identities not accepted or touched for ``expiry_seconds``; returns their names."""
        removed = []
        for name in self.names():
            path = self.directory / f"{name}{FILE_SUFFIX}"
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if now - mtime >= self.expiry_seconds:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(name)
                    log.info("identity %s expired (untouched for %.0f s)", name, now - mtime)
        return removed

    # -- internals -------------------------------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        try:
            validate_name(name)
        except IdentityError:
            return None
        return self.directory / f"{name}{FILE_SUFFIX}"

    @staticmethod
    def _touch(path: Path, now: float) -> None:
        with contextlib.suppress(OSError):
            os.utime(path, (now, now))

    def _remove_stale_temp_files(self) -> None:
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
