"""identity-propagate helpers: known servers, building identities, sending them everywhere.

* :func:`known_servers` turns ``services/identity-propagate/known-servers`` (parsed by
  :mod:`bitdust.config`, the one parser of that setting) into :class:`KnownServer` values;
  :func:`source_servers` keeps those an identity names as sources.
* :func:`idurls_for`, :func:`build_identity`, :func:`next_revision` make signed documents.
* :func:`propagate` sends one document to every server's TCP intake, concurrently, retrying
  transport failures with exponential backoff (a refusal is final: it would be refused again).
* :func:`check_name_available` asks every server whether a name is already taken.
* :func:`recover_identity` is ``identity restore``: key backup -> fetch -> cross-check.
* :func:`create_identity` is the whole ``identity create``: check the name, generate the key, build,
  sign, propagate. It writes nothing to disk: the caller saves the key and document
  (:mod:`bitdust.identity.local`).

Host names go through the caller's ``resolve(host) -> address`` (see
:func:`bitdust.identity.client.fetch_identity`).
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bitdust import __version__, keysize
from bitdust.identity.client import Resolver, fetch_identity, resolve_host, send_identity
from bitdust.identity.document import SCHEME_PSS, Identity, format_date, parse_identity
from bitdust.identity.errors import (
    IdentityError,
    IdentityNotFound,
    IdentityRefused,
    IdentityServerError,
)
from bitdust.identity.idurl import (
    format_idurl,
    validate_host,
    validate_name,
    validate_port,
)
from bitdust.identity.keys import (
    RSAPrivateKey,
    generate_private_key,
    public_key_to_openssh,
    read_key_backup,
)
from bitdust.identity.signing import sign, verify

log = logging.getLogger(__name__)

KNOWN_SERVERS_SETTING = "services/identity-propagate/known-servers"
DEFAULT_VERSION = f"bitdust-py {__version__}"


@dataclass(frozen=True, slots=True)
class KnownServer:
    """An identity server: its host, the HTTP port written in IDURLs, and its TCP intake port."""

    host: str
    http_port: int
    tcp_port: int

    def __post_init__(self) -> None:
        validate_host(self.host)
        validate_port(self.http_port)
        validate_port(self.tcp_port)

    def __str__(self) -> str:
        return f"{self.host}:{self.http_port}:{self.tcp_port}"

    def idurl(self, name: str) -> str:
        return format_idurl(self.host, self.http_port, name)


@dataclass(frozen=True, slots=True)
class PropagateResult:
    """Outcome of sending an identity to one server."""

    server: KnownServer
    ok: bool
    idurl: str | None  # the server's answer on success
    error: str | None  # the reason on failure
    attempts: int
    refused: bool = False  # the server answered ERROR (as opposed to being unreachable)


class NameState(enum.Enum):
    """What one server said about a name."""

    FREE = "free"  # 404: no identity of that name
    TAKEN = "taken"  # it serves an identity of that name
    UNREACHABLE = "unreachable"  # no answer, or not one we understand


@dataclass(frozen=True, slots=True)
class NameCheck:
    """Whether a name is free on every reachable server."""

    name: str
    taken_on: tuple[KnownServer, ...]
    unreachable: tuple[tuple[KnownServer, str], ...]

    @property
    def available(self) -> bool:
        """No server holds the name (unreachable servers are not counted as taking it)."""
        return not self.taken_on


@dataclass(frozen=True, slots=True)
class CreatedIdentity:
    """The result of :func:`create_identity`: the new key, the signed document, the results."""

    private_key: RSAPrivateKey
    identity: Identity
    results: tuple[PropagateResult, ...]


# -- known servers --------------------------------------------------------------------------------


def known_servers(entries: Iterable[tuple[str, int, int]]) -> list[KnownServer]:
    """The known-servers setting as config parses it (``(host, http_port, tcp_port)`` tuples)."""
    return [KnownServer(host, http_port, tcp_port) for host, http_port, tcp_port in entries]


def source_servers(identity: Identity, servers: Iterable[KnownServer]) -> list[KnownServer]:
    """The servers among ``servers`` that ``identity`` names as its sources: the only ones that
    store it (any other refuses it as foreign), so the only ones it is sent to."""
    sources = set(identity.sources)
    return [server for server in servers if server.idurl(identity.name) in sources]


# -- documents ------------------------------------------------------------------------------------


def idurls_for(name: str, servers: Iterable[KnownServer]) -> list[str]:
    """The IDURL of ``name`` on each server, in order (the first is the primary IDURL)."""
    validate_name(name)
    return [server.idurl(name) for server in servers]


def build_identity(
    name: str,
    servers: Sequence[KnownServer],
    contacts: Sequence[str],
    private_key: RSAPrivateKey,
    *,
    revision: int = 1,
    today: datetime.date | None = None,
    version: str = DEFAULT_VERSION,
    scheme: str = SCHEME_PSS,
) -> Identity:
    """A new signed identity for ``name`` with a source on each of ``servers`` (1-6)."""
    if not servers:
        raise IdentityError(f"no identity servers: set {KNOWN_SERVERS_SETTING}")
    unsigned = Identity(
        sources=tuple(idurls_for(name, servers)),
        contacts=tuple(contacts),
        date=format_date(today or datetime.date.today()),
        version=version,
        revision=revision,
        publickey=public_key_to_openssh(private_key),
        scheme=scheme,
    )
    return sign(unsigned, private_key, scheme)


def next_revision(
    identity: Identity,
    private_key: RSAPrivateKey,
    *,
    contacts: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    today: datetime.date | None = None,
    scheme: str = SCHEME_PSS,
) -> Identity:
    """The next revision of ``identity`` (revision + 1, today's date, optional new contacts or
    sources), signed with ``private_key`` — which must be the identity's own key."""
    if public_key_to_openssh(private_key) != identity.publickey:
        raise IdentityError("this private key does not belong to the identity")
    changed = identity.replace(
        contacts=tuple(identity.contacts if contacts is None else contacts),
        sources=tuple(identity.sources if sources is None else sources),
        date=format_date(today or datetime.date.today()),
        revision=identity.revision + 1,
        signature="",
        scheme=scheme,
    )
    return sign(changed, private_key, scheme)


# -- network --------------------------------------------------------------------------------------


async def propagate(
    identity_xml: bytes,
    servers: Sequence[KnownServer],
    resolve: Resolver,
    retries: int = 3,
    backoff: float = 1.0,
    *,
    timeout: float = 10.0,
) -> list[PropagateResult]:
    """Send ``identity_xml`` to every server's TCP intake; one result per server, in order.

    Each server gets up to ``retries`` attempts when it cannot be reached, waiting ``backoff``,
    then twice as long, and so on; a refusal is not retried.
    """
    attempts_allowed = max(1, retries)
    return list(
        await asyncio.gather(
            *(
                _propagate_one(identity_xml, server, resolve, attempts_allowed, backoff, timeout)
                for server in servers
            )
        )
    )


async def _propagate_one(
    xml: bytes,
    server: KnownServer,
    resolve: Resolver,
    attempts_allowed: int,
    backoff: float,
    timeout: float,
) -> PropagateResult:
    error = "not attempted"
    for attempt in range(1, attempts_allowed + 1):
        try:
            address = await resolve_host(resolve, server.host)
            idurl = await send_identity(address, server.tcp_port, xml, timeout)
        except IdentityRefused as refusal:
            log.warning("identity refused by %s: %s", server.host, refusal.reason)
            return PropagateResult(server, False, None, refusal.reason, attempt, refused=True)
        except IdentityError as exc:
            error = exc.message
            log.info("identity not sent to %s (attempt %d): %s", server.host, attempt, error)
            if attempt < attempts_allowed:
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
            continue
        log.info("identity propagated to %s: %s", server.host, idurl)
        return PropagateResult(server, True, idurl, None, attempt)
    return PropagateResult(server, False, None, error, attempts_allowed)


async def check_name_available(
    name: str, servers: Sequence[KnownServer], resolve: Resolver, *, timeout: float = 10.0
) -> NameCheck:
    """Fetch ``http://host:port/<name>.xml`` on every server; report where it is taken."""
    validate_name(name)

    async def probe(server: KnownServer) -> tuple[KnownServer, NameState, str]:
        try:
            await fetch_identity(server.idurl(name), resolve, timeout=timeout)
        except IdentityNotFound:
            return server, NameState.FREE, ""
        except IdentityServerError as exc:
            return server, NameState.UNREACHABLE, exc.message
        return server, NameState.TAKEN, ""

    outcomes = await asyncio.gather(*(probe(server) for server in servers))
    return NameCheck(
        name=name,
        taken_on=tuple(server for server, state, _ in outcomes if state is NameState.TAKEN),
        unreachable=tuple(
            (server, reason) for server, state, reason in outcomes if state is NameState.UNREACHABLE
        ),
    )


async def create_identity(
    name: str,
    servers: Sequence[KnownServer],
    contacts: Sequence[str],
    resolve: Resolver,
    *,
    key_bits: int = keysize.DEFAULT_KEY_BITS,
    min_servers: int = 1,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 10.0,
    today: datetime.date | None = None,
) -> CreatedIdentity:
    """``identity create``: check ``name`` is free, generate a key, build and sign the identity
    (a source on each server, at most 6), and propagate it.

    Raises :class:`IdentityError` when the name is taken, no server is configured, or fewer than
    ``min(min_servers, len(servers))`` servers accepted it (the message lists each server's
    reason). Nothing is written to disk.
    """
    validate_name(name)
    servers = list(servers)[:6]
    if not servers:
        raise IdentityError(f"no identity servers: set {KNOWN_SERVERS_SETTING}")
    check = await check_name_available(name, servers, resolve, timeout=timeout)
    if not check.available:
        hosts = ", ".join(server.host for server in check.taken_on)
        raise IdentityError(f"the name {name!r} is already taken on {hosts}: choose another name")
    private_key = await asyncio.to_thread(generate_private_key, key_bits)
    identity = build_identity(name, servers, contacts, private_key, today=today)
    results = await propagate(
        identity.to_xml(), servers, resolve, retries, backoff, timeout=timeout
    )
    accepted = sum(result.ok for result in results)
    needed = min(max(1, min_servers), len(servers))
    if accepted < needed:
        failures = "; ".join(
            f"{result.server.host}: {result.error}" for result in results if not result.ok
        )
        raise IdentityError(
            f"identity {name} was accepted by {accepted} of {len(servers)} identity servers, "
            f"{needed} needed ({failures})"
        )
    return CreatedIdentity(private_key, identity, tuple(results))


async def recover_identity(
    backup: bytes,
    resolve: Resolver,
    *,
    passphrase: str | bytes | None = None,
    idurl: str | None = None,
    accept_legacy: bool = False,
    timeout: float = 10.0,
) -> tuple[RSAPrivateKey, Identity]:
    """``identity restore``: read a key backup, fetch the identity it names (or ``idurl``), and
    check that the identity's public key is the backup's key and its signature holds.

    Returns ``(private_key, identity)``; the caller saves them
    (:func:`bitdust.identity.local.save_local_identity`). Raises :class:`IdentityError`
    subclasses: wrong passphrase, not a backup file, identity not found, key mismatch.
    """
    # the passphrase KDF takes tens of milliseconds: not on the event loop
    backup_idurl, private_key = await asyncio.to_thread(read_key_backup, backup, passphrase)
    identity = await fetch_identity_of_key(
        private_key, idurl or backup_idurl, resolve, accept_legacy=accept_legacy, timeout=timeout
    )
    return private_key, identity


async def fetch_identity_of_key(
    private_key: RSAPrivateKey,
    idurl: str,
    resolve: Resolver,
    *,
    accept_legacy: bool = False,
    timeout: float = 10.0,
) -> Identity:
    """The identity at ``idurl``, checked to be ``private_key``'s and correctly signed.

    Raises :class:`IdentityServerError` when it cannot be fetched (the caller may try another
    server), :class:`IdentityError` on a key mismatch or a bad signature.
    """
    identity = parse_identity(await fetch_identity(idurl, resolve, timeout=timeout))
    if identity.publickey != public_key_to_openssh(private_key):
        raise IdentityError(
            f"the identity at {idurl} has another public key than the key in the backup"
        )
    verify(identity, accept_legacy)
    return identity
