"""Two session cores wired back to back with a fake clock: no sockets, no event loop."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.p2p.events import Event, PeerIdentityNeeded
from bitdust.p2p.handshake import LocalPeer, PeerIdentity
from bitdust.p2p.session import Session, SessionTimeouts

ALICE = "http://host-a.com/alice.xml"
BOB = "http://host-b.com/bob.xml"
MALLORY = "http://host-c.com/mallory.xml"
DEFAULT_TIMEOUTS = SessionTimeouts()


@functools.cache
def identity_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@dataclass
class Directory:
    """What the shells would fetch from identity servers: IDURL -> (revision, key)."""

    entries: dict[str, PeerIdentity] = field(default_factory=dict)

    def publish(self, idurl: str, revision: int, key: rsa.RSAPrivateKey) -> None:
        self.entries[idurl] = PeerIdentity((idurl,), revision, key.public_key())


class Wire:
    """Copies records between an initiator and a responder; the clock moves when told to."""

    def __init__(
        self,
        alice_revision: int = 3,
        bob_revision: int = 5,
        timeouts: SessionTimeouts = DEFAULT_TIMEOUTS,
        dial: str = BOB,
    ) -> None:
        self.now = 1000.0
        self.directory = Directory()
        self.directory.publish(ALICE, alice_revision, identity_key("alice"))
        self.directory.publish(BOB, bob_revision, identity_key("bob"))
        alice = LocalPeer.from_identity_key(identity_key("alice"), ALICE, alice_revision)
        bob = LocalPeer.from_identity_key(identity_key("bob"), BOB, bob_revision)
        self.a = Session(
            initiator=True, local=alice, now=self.now, expected_idurl=dial, timeouts=timeouts
        )
        self.b = Session(initiator=False, local=bob, now=self.now, timeouts=timeouts)
        self.events: dict[Session, list[Event]] = {self.a: [], self.b: []}
        self.tap: list[tuple[Session, bytes]] = []  # every record batch, by sender

    def other(self, session: Session) -> Session:
        return self.b if session is self.a else self.a

    def drain_events(self, session: Session) -> None:
        while (event := session.next_event()) is not None:
            self.events[session].append(event)
            if isinstance(event, PeerIdentityNeeded):
                session.peer_identity(self.directory.entries.get(event.idurl), self.now)

    def pump(self, rounds: int = 50) -> None:
        """Move bytes both ways until nothing is left to send."""
        for _ in range(rounds):
            moved = False
            for sender in (self.a, self.b):
                self.drain_events(sender)
                data = sender.data_to_send()
                if data:
                    moved = True
                    self.tap.append((sender, data))
                    self.other(sender).receive_data(data, self.now)
            if not moved:
                for session in (self.a, self.b):
                    self.drain_events(session)
                return
        raise AssertionError("the sessions never went quiet")

    def of(self, session: Session, kind: type) -> list:
        return [event for event in self.events[session] if isinstance(event, kind)]
