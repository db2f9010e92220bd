"""Real p2p endpoints on 127.0.0.1 for proxy tests: identities served from memory (signed and
verified as fetched ones are), routers, routed nodes with no listening socket, and a TCP tee."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Collection

from bitdust.identity.document import Identity, format_date
from bitdust.identity.errors import IdentityNotFound
from bitdust.identity.keys import public_key_to_openssh
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.transport import EndpointLimits, P2PEndpoint
from bitdust.proxy.client import ProxyClient
from bitdust.proxy.relay import Relay, RelayLimits
from bitdust.proxy.router import Router
from tests.p2p.peers import identity_key

HOST = "127.0.0.1"
SHORT_LEASE = RelayLimits(lease=1.5)  # routed nodes renew every half second
DEFAULT_SESSIONS = EndpointLimits()


class Network:
    """Identity documents by IDURL (a new revision on every publish) and the endpoints."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.revisions: dict[str, int] = {}
        self.endpoints: list[P2PEndpoint] = []
        self.routers: list[Router] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.tees: list[Tee] = []

    async def fetch(self, idurl: str) -> bytes:
        if idurl not in self.documents:
            raise IdentityNotFound(f"{idurl}: no such identity")
        return self.documents[idurl]

    def publish(self, idurl: str, contacts: list[str]) -> None:
        self.revisions[idurl] = self.revisions.get(idurl, 0) + 1
        key = identity_key(idurl)
        unsigned = Identity(
            sources=(idurl,),
            contacts=tuple(contacts),
            date=format_date(datetime.date(2026, 11, 25)),
            revision=self.revisions[idurl],
            publickey=public_key_to_openssh(key),
        )
        self.documents[idurl] = sign(unsigned, key).to_xml()

    def endpoint(self, idurl: str, limits: EndpointLimits = DEFAULT_SESSIONS) -> P2PEndpoint:
        base = LocalPeer.from_identity_key(identity_key(idurl), idurl, 1)

        async def resolve(host: str) -> str:
            return host

        endpoint = P2PEndpoint(
            lambda: base.with_revision(self.revisions.get(idurl, 1)),
            Directory(self.fetch),
            resolve,
            limits,
        )
        self.endpoints.append(endpoint)
        return endpoint

    async def direct(self, idurl: str) -> P2PEndpoint:
        endpoint = self.endpoint(idurl)
        _, port = await endpoint.listen(HOST, 0)
        self.publish(idurl, [f"tcp://{HOST}:{port}"])
        return endpoint

    async def router(
        self,
        idurl: str,
        limits: RelayLimits = SHORT_LEASE,
        tee: bool = False,
        sessions: EndpointLimits = DEFAULT_SESSIONS,
    ) -> tuple[P2PEndpoint, Router]:
        """A router; with ``tee`` its published contact is a recording tee in front of it."""
        endpoint = self.endpoint(idurl, sessions)
        _, port = await endpoint.listen(HOST, 0)
        if tee:
            recorder = Tee(port)
            await recorder.start()
            self.tees.append(recorder)
            port = recorder.port
        contact = f"tcp://{HOST}:{port}"
        self.publish(idurl, [contact])
        router = Router(Relay(limits), endpoint, contact)
        self.routers.append(router)
        return endpoint, router

    async def routed(self, idurl: str, routers: list[str]) -> tuple[P2PEndpoint, ProxyClient]:
        """A node with no listening socket, routed through the first of ``routers`` that
        takes it; returns once its router's contact is published."""
        self.publish(idurl, [])
        endpoint = self.endpoint(idurl)

        async def candidates(exclude: Collection[str]) -> list[str]:
            return [router for router in routers if router not in exclude]

        client = ProxyClient(
            endpoint, candidates, lambda contacts: self.publish(idurl, contacts), retry_after=0.5
        )
        self.tasks.append(asyncio.get_running_loop().create_task(client.run()))
        await until(lambda: client.router is not None)
        return endpoint, client

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for router in self.routers:
            router.close()
        for endpoint in self.endpoints:
            await endpoint.close()
        for tee in self.tees:
            tee.close()


class Tee:
    """A TCP forwarder in front of a port that records every byte it passes, both ways."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.recorded = bytearray()
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, 0)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        await asyncio.gather(
            self._copy(reader, up_writer), self._copy(up_reader, writer), return_exceptions=True
        )

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.recorded += chunk
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
