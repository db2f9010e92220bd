"""What an identity server accepts: the rules, as a sans-IO core (no files, no sockets, no clock).

:class:`IdentityPolicy` decides on one submitted document (:meth:`~IdentityPolicy.parse`, then
:meth:`~IdentityPolicy.judge` against the copy stored under its name, or none);
:class:`NewNameQuota` limits how fast one key or one address may claim new names.
:class:`~bitdust.identity.store.IdentityStore` applies both and does the file I/O. The rules,
checked in this order:

1. the document fits the size limit (checked before parsing);
2. it parses (:func:`~bitdust.identity.document.parse_identity`: hardened, no DTD/entities; its
   public key is RSA of an allowed size with the exponent 65537, :mod:`bitdust.rsakeys`);
3. its signature verifies (:func:`~bitdust.identity.signing.verify`; BitDust's legacy scheme only
   when ``accept_legacy``);
4. one of its sources is this server: ``http://<host>[:<public_port>]/<name>.xml``, host *and*
   port. ``public_port`` is the HTTP port written in IDURLs — 80 when nginx fronts the server,
   otherwise the identity server's own ``web-port``;
5. when the name is already stored: the public key is the same (no key takeover) and the
   revision is higher. An equal revision with the same content (every field and the scheme; the
   signature may differ, as PSS signatures are randomized) is a **touch**: the stored file is kept,
   its expiry refreshed, and it counts as accepted (a node re-sends its unchanged identity to keep
   it alive). An equal revision with different content is refused.

The store adds the limits that depend on what it holds: a new name must fit the name and byte
bounds, and its key and address their :class:`NewNameQuota`.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass

from bitdust.identity.document import MAX_DOCUMENT_SIZE, Identity, parse_identity
from bitdust.identity.errors import IdentityError, IdentityRefused, Refusal
from bitdust.identity.idurl import format_idurl, validate_host, validate_port
from bitdust.identity.signing import verify


class Verdict(enum.Enum):
    """What accepting a document does to the store."""

    STORE = "stored"  # a new name
    UPDATE = "updated"  # a higher revision of a stored name
    TOUCH = "touched"  # the stored revision again: only its expiry is refreshed


@dataclass(frozen=True, slots=True)
class Admission:
    """An accepted document: the identity, its canonical bytes (what is stored), the verdict."""

    identity: Identity
    canonical: bytes
    verdict: Verdict

    @property
    def key_id(self) -> str:
        """A short, loggable id of the identity's public key (for per-key quotas)."""
        return hashlib.sha256(self.identity.publickey.encode("ascii")).hexdigest()[:32]


class IdentityPolicy:
    """Rules 1-5 of the module docstring for the server ``host`` reached at ``public_port``."""

    def __init__(
        self,
        host: str,
        public_port: int,
        *,
        size_limit: int = MAX_DOCUMENT_SIZE,
        accept_legacy: bool = False,
    ) -> None:
        self.host = validate_host(host)
        self.public_port = validate_port(public_port)
        if not 1 <= size_limit <= MAX_DOCUMENT_SIZE:
            raise IdentityError(
                f"identity size limit {size_limit!r} must be 1-{MAX_DOCUMENT_SIZE} bytes"
            )
        self.size_limit = size_limit
        self.accept_legacy = accept_legacy

    def idurl_for(self, name: str) -> str:
        """The IDURL this server serves ``name`` at."""
        return format_idurl(self.host, self.public_port, name)

    def parse(self, data: bytes) -> Identity:
        """Rules 1-4: a verified identity that names this server among its sources."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise IdentityRefused(Refusal.MALFORMED, "malformed identity: not bytes")
        if len(data) > self.size_limit:
            raise IdentityRefused(
                Refusal.TOO_LARGE,
                f"identity is {len(data)} bytes; this server accepts at most {self.size_limit}",
            )
        try:
            identity = parse_identity(bytes(data))
        except IdentityError as exc:
            raise IdentityRefused(Refusal.MALFORMED, f"malformed identity: {exc.message}") from None
        try:
            verify(identity, self.accept_legacy)
        except IdentityError as exc:
            raise IdentityRefused(Refusal.BAD_SIGNATURE, f"bad signature: {exc.message}") from None
        if not any(idurl.server == (self.host, self.public_port) for idurl in identity.idurls):
            raise IdentityRefused(
                Refusal.NOT_A_SOURCE,
                f"none of the identity's sources is on this server: expected "
                f"{self.idurl_for(identity.name)} among {', '.join(identity.sources)}",
            )
        return identity

    def judge(self, identity: Identity, stored: bytes | None) -> Admission:
        """Rule 5 against the stored copy, and the size of the canonical form."""
        canonical = identity.to_xml()
        if len(canonical) > self.size_limit:
            raise IdentityRefused(
                Refusal.TOO_LARGE,
                f"identity is {len(canonical)} bytes once normalised; this server accepts at "
                f"most {self.size_limit}",
            )
        name = identity.name
        if stored is None:
            return Admission(identity, canonical, Verdict.STORE)
        try:
            previous = parse_identity(stored)
        except IdentityError:
            raise IdentityRefused(
                Refusal.STORED_COPY_UNREADABLE,
                f"the stored copy of {name} is unreadable on this server; ask its operator",
            ) from None
        if previous.public_key.public_numbers() != identity.public_key.public_numbers():
            raise IdentityRefused(
                Refusal.KEY_TAKEOVER,
                f"key takeover refused: {name} is already registered on this server with "
                "another public key",
            )
        if identity.revision < previous.revision:
            raise IdentityRefused(
                Refusal.OLDER_REVISION,
                f"revision {identity.revision} of {name} is older than the stored revision "
                f"{previous.revision}",
            )
        if identity.revision == previous.revision:
            if identity.unsigned() != previous.unsigned():
                raise IdentityRefused(
                    Refusal.CHANGED_WITHOUT_REVISION,
                    f"revision {identity.revision} of {name} is already stored with different "
                    "content: publish a higher revision",
                )
            return Admission(identity, canonical, Verdict.TOUCH)
        return Admission(identity, canonical, Verdict.UPDATE)


class NewNameQuota:
    """At most ``limit`` new names per subject (a key id, an address) in any ``window`` seconds.

    Memory is bounded: at most ``max_subjects`` subjects are tracked; past that the least
    recently active one is forgotten (an attacker rotating through more subjects than that gains
    nothing a fresh subject would not have).
    """

    def __init__(self, limit: int, window: float = 3600.0, max_subjects: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_subjects = max_subjects
        self._claims: OrderedDict[str, deque[float]] = OrderedDict()

    def allows(self, subject: str, now: float) -> bool:
        """Whether ``subject`` may claim one more new name at ``now`` (nothing is recorded)."""
        claims = self._claims.get(subject)
        if claims is None:
            return self.limit > 0
        while claims and claims[0] <= now - self.window:
            claims.popleft()
        return len(claims) < self.limit

    def record(self, subject: str, now: float) -> None:
        """``subject`` claimed a new name at ``now``."""
        claims = self._claims.pop(subject, None) or deque()
        claims.append(now)
        self._claims[subject] = claims  # most recently active last
        while len(self._claims) > self.max_subjects:
            self._claims.popitem(last=False)
