"""The ``p2p`` service: the node's listener for p2p sessions, its published contact, and the
calls other services use to talk to peers by IDURL.

It listens on ``services/tcp-connections/tcp-port`` at the node's bind address and tells
identity-propagate the contact to publish (``tcp://<host>:<port>``): the listen host when one is
set, else this host's own address when its name resolves to one that is not loopback; nothing
otherwise (DESIGN §2). A new port or host is a new contact, published at the next start.

It starts without an identity too, so that a fresh node can run and create one: until then it
listens, refuses sessions, and its calls say to create an identity; the first session after
``identity create`` uses the new identity, no restart needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import socket
from pathlib import Path
from typing import Any

from bitdust.files import FileError
from bitdust.identity.client import fetch_identity
from bitdust.identity.local import LocalIdentity
from bitdust.identity.propagate_service import IdentityPropagateService
from bitdust.node.service import Service, ServiceError
from bitdust.p2p.directory import Directory, Sources
from bitdust.p2p.errors import P2PError
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.sources import FILE_NAME as SOURCES_FILE
from bitdust.p2p.sources import SourcesFileError, load_sources, save_sources
from bitdust.p2p.speedtest import Speedtest
from bitdust.p2p.transport import (
    NO_IDENTITY,
    EndpointLimits,
    EventHandler,
    OutgoingStream,
    P2PEndpoint,
    RequestHandler,
    StreamHandler,
)

log = logging.getLogger(__name__)

PORT_KEY = "services/tcp-connections/tcp-port"
PING = "p2p/ping"
IDENTITY_FETCH_TIMEOUT = 10.0


class P2PService(Service):
    name = "p2p"  # the owner of the contact it declares to identity-propagate
    metric_gauges = ("sessions", "streams")
    endpoint: P2PEndpoint
    directory: Directory
    speedtest: Speedtest

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.propagate: IdentityPropagateService = node.service("identity-propagate")
        self.contact: str | None = None
        self._local: tuple[LocalIdentity, LocalPeer] | None = None
        self.sources_file: Path | None = node.paths.state_dir / SOURCES_FILE

    async def start(self) -> None:
        self.directory = Directory(
            self._fetch,
            accept_legacy=self.config["services/network/accept-legacy-identities"],
            sources=await asyncio.to_thread(self._load_sources),
        )
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limits = EndpointLimits.within_descriptors(nofile)
        self.endpoint = P2PEndpoint(self.local_peer, self.directory, self.node.resolve, limits)
        port = self.config[PORT_KEY]
        try:
            _, bound = await self.endpoint.listen(self.node.bind_host, port)
        except OSError as exc:
            raise ServiceError(
                f"cannot listen on TCP {self.node.bind_host}:{port}: {exc.strerror or exc} "
                f"(choose another port: bitdust set {PORT_KEY} PORT)"
            ) from None
        host = await published_host(self.node.listen_host)
        if host is None:
            log.warning(
                "p2p: this host's name resolves to no public address, so no contact is "
                "published: set services/network/listen-host to the address peers reach"
            )
        else:
            self.contact = f"tcp://{_url_host(host)}:{bound}"
            self.propagate.set_contacts(self.name, [self.contact])
        self.endpoint.on_request(PING, _pong)
        self.speedtest = Speedtest(self.endpoint)
        log.info("p2p listening on TCP %s:%d", self.node.bind_host, bound)

    def publish_direct(self, publish: bool) -> None:
        """Publish this node's own contact, or not while a proxy router carries its traffic
        (proxy-transport says which: behind NAT the listener is not reachable from outside)."""
        if self.contact is not None:
            self.propagate.set_contacts(self.name, [self.contact] if publish else [])

    async def stop(self) -> None:
        """Close the listener and the sessions. The contact stays declared: the node stops
        only to shut down or restart, and withdrawing it would sign a revision without it (that
        peers could not even try) and another one with it at the next start. Peers' identity
        sources are kept for the next start."""
        await self.endpoint.close()
        if self.sources_file is not None:
            try:
                await asyncio.to_thread(
                    save_sources, self.sources_file, self.directory.known_sources()
                )
            except FileError as exc:
                log.warning("p2p: peers' identity sources not kept: %s", exc)

    def _load_sources(self) -> Sources:
        """What the last run learned; nothing when the file cannot be used, which is then left
        as it is (not written at stop)."""
        if self.sources_file is None:
            return {}
        try:
            return load_sources(self.sources_file)
        except SourcesFileError as exc:
            log.warning("p2p: %s; not used, and left as it is (remove it to keep them again)", exc)
            self.sources_file = None
            return {}

    # -- this node in handshakes ------------------------------------------------------------------

    def local_peer(self) -> LocalPeer | None:
        """This node's identity for the next handshake (None: no identity yet). The binding
        signature is made once per identity key; a new revision only changes the number."""
        current = self.propagate.current
        if current is None:
            return None
        if self._local is None or self._local[0].private_key is not current.private_key:
            peer = LocalPeer.from_identity_key(
                current.private_key, current.identity.idurl, current.identity.revision
            )
            self._local = (current, peer)
        peer = self._local[1]
        if peer.revision != current.identity.revision:
            peer = peer.with_revision(current.identity.revision)
            self._local = (current, peer)
        return peer

    async def _fetch(self, idurl: str) -> bytes:
        return await fetch_identity(idurl, self.node.resolve, timeout=IDENTITY_FETCH_TIMEOUT)

    # -- what other services call ---------------------------------------------------------------

    def _require_identity(self) -> None:
        if self.propagate.current is None:
            raise ServiceError(NO_IDENTITY)

    async def request(
        self,
        idurl: str,
        kind: str,
        data: bytes,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> bytes:
        """Send a ``kind`` request to ``idurl`` over a session (opened when needed) and return
        the answer; ``idempotent`` ones are sent again when the connection is lost. Raises
        :class:`bitdust.p2p.errors.P2PError` subclasses."""
        self._require_identity()
        return await self.endpoint.request(idurl, kind, data, timeout, idempotent)

    async def send_event(self, idurl: str, kind: str, data: bytes) -> None:
        self._require_identity()
        await self.endpoint.send_event(idurl, kind, data)

    async def open_stream(self, idurl: str, kind: str, header: bytes = b"") -> OutgoingStream:
        self._require_identity()
        return await self.endpoint.open_stream(idurl, kind, header)

    async def ping(self, idurl: str, timeout: float) -> dict[str, Any]:
        """Open (or reuse) a session with ``idurl`` and time one request over it: BitDust's
        ``user/ping``. ServiceError says why the peer cannot be reached."""
        self._require_identity()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                await self.endpoint.request(idurl, PING, b"", timeout)
        except TimeoutError:
            raise ServiceError(f"{idurl} did not answer in {timeout:g} s") from None
        except P2PError as exc:
            raise ServiceError(str(exc)) from None
        return {"idurl": idurl, "rtt_ms": round((loop.time() - started) * 1000, 3)}

    async def run_speedtest(
        self, idurl: str, size: int, download: bool, timeout: float, marker: bytes = b""
    ) -> dict[str, Any]:
        """Stream ``size`` bytes to ``idurl`` (from it, ``download``) and report bytes, seconds,
        MB/s and whether both ends saw the same SHA-256. ServiceError says why it failed."""
        self._require_identity()
        try:
            async with asyncio.timeout(timeout):
                report = await self.speedtest.run(idurl, size, download, timeout, marker)
        except TimeoutError:
            raise ServiceError(
                f"the speed test with {idurl} did not end in {timeout:g} s"
            ) from None
        except P2PError as exc:
            raise ServiceError(str(exc)) from None
        return report.to_dict()

    def on_request(self, kind: str, handler: RequestHandler) -> None:
        self.endpoint.on_request(kind, handler)

    def on_event(self, kind: str, handler: EventHandler) -> None:
        self.endpoint.on_event(kind, handler)

    def on_stream(self, kind: str, handler: StreamHandler) -> None:
        self.endpoint.on_stream(kind, handler)

    # -- reporting ------------------------------------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        return sorted(self.endpoint.sessions(), key=lambda s: (s["idurl"] or "", s["address"]))

    def info(self) -> dict[str, Any]:
        sessions = self.endpoint.sessions()
        counts = self.endpoint.counts
        return {
            "tcp_port": self.endpoint.address[1],
            "contact": self.contact,
            "sessions": len(sessions),
            "streams": sum(session["streams"] for session in sessions),
            "max_sessions": self.endpoint.limits.max_sessions,
            "sessions_per_address": self.endpoint.limits.sessions_per_address,
            "counters": {  # the bytes of open sessions too, so that they never go down
                "sessions_opened": counts["sessions_opened"],
                "sessions_failed": counts["sessions_failed"],
                "bytes_received": counts["bytes_received"] + sum(s["bytes_in"] for s in sessions),
                "bytes_sent": counts["bytes_sent"] + sum(s["bytes_out"] for s in sessions),
            },
        }

    def status_text(self) -> str:
        sessions = len(self.endpoint.sessions())
        waiting = "" if self.propagate.current is not None else ", waiting for an identity"
        return f"p2p on TCP {self.endpoint.address[1]}, {sessions} sessions{waiting}"


async def published_host(listen_host: str) -> str | None:
    """The address peers reach this node at: the listen host when one is set, else this host's
    own address as its name resolves, unless that is loopback (Debian maps the host name to
    127.0.1.1); None when there is none."""
    if listen_host and not ipaddress.ip_address(listen_host).is_unspecified:
        return listen_host
    loop = asyncio.get_running_loop()
    try:
        name = await asyncio.to_thread(socket.getfqdn)  # may ask DNS
        infos = await loop.getaddrinfo(name, None, family=socket.AF_INET)
    except OSError:
        return None
    for info in infos:
        address = str(info[4][0])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


async def _pong(peer: str, data: bytes) -> bytes:
    return b""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
