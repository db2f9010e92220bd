"""The Noise XX handshake that opens a p2p session, and the identity binding it carries.

``Noise_XX_25519_AESGCM_SHA256`` (the ``noiseprotocol`` library), our wire version in the
prologue. Messages 2 and 3 carry each side's :class:`~bitdust.p2p.wire.HandshakePayload`: its
IDURL, identity revision and an RSA-PSS signature by its identity key over
``STATIC_KEY_LABEL || Noise static public key`` (libp2p's Noise identity binding). The static
X25519 key is derived from the identity key, so it is the same after a restart. The peer's claim
is checked against the identity document the shell fetched; this is the one public-key operation
of a session. Sans-IO: no sockets, no clock; the session core drives it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from noise.connection import Keypair, NoiseConnection

from bitdust import rsakeys
from bitdust.identity.keys import derive_key
from bitdust.p2p.events import CloseReason
from bitdust.p2p.wire import (
    NOISE_PROTOCOL,
    PROLOGUE,
    STATIC_KEY_LABEL,
    WIRE_VERSION,
    HandshakePayload,
    MalformedFrame,
    decode_handshake_payload,
    encode_handshake_payload,
)

STATIC_KEY_DERIVATION_LABEL = "p2p/noise-static/v1"


class HandshakeRefused(Exception):
    """The handshake cannot go on; ``reason`` is the typed cause, the message the detail."""

    def __init__(self, reason: CloseReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.detail = detail or reason.value


@dataclass(frozen=True)
class LocalPeer:
    """Who this node says it is in a handshake: made once per identity revision."""

    idurl: str
    revision: int
    static_private: bytes
    signature: bytes

    @classmethod
    def from_identity_key(
        cls, private_key: rsa.RSAPrivateKey, idurl: str, revision: int
    ) -> LocalPeer:
        """The static key derived from the identity key, and its binding signed once."""
        static_private = derive_key(private_key, STATIC_KEY_DERIVATION_LABEL)
        public = static_public_key(static_private)
        return cls(idurl, revision, static_private, rsakeys.sign_pss(private_key, binding(public)))

    def with_revision(self, revision: int) -> LocalPeer:
        return LocalPeer(self.idurl, revision, self.static_private, self.signature)

    def payload(self) -> bytes:
        return encode_handshake_payload(HandshakePayload(self.idurl, self.revision, self.signature))


@dataclass(frozen=True)
class PeerIdentity:
    """What the shell knows of a peer from its identity document (fetched and verified):
    the IDURLs it names, its revision and its identity key."""

    idurls: tuple[str, ...]
    revision: int
    public_key: rsa.RSAPublicKey


def binding(static_public: bytes) -> bytes:
    """The bytes an identity key signs to own a Noise static key."""
    return STATIC_KEY_LABEL + static_public


def static_public_key(static_private: bytes) -> bytes:
    """The X25519 public key of a Noise static private key."""
    key = X25519PrivateKey.from_private_bytes(static_private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Step(enum.Enum):
    SEND_1 = "initiator sends e"
    READ_1 = "responder reads e"
    READ_2 = "initiator reads e, ee, s, es and the responder's payload"
    VERIFY_2 = "initiator checks the responder's identity"
    READ_3 = "responder reads s, se and the initiator's payload"
    VERIFY_3 = "responder checks the initiator's identity"
    DONE = "done"


class Handshake:
    """One side of Noise XX. ``expected_idurl`` is the identity an initiator dialled.

    Feed each handshake message to :meth:`read`; when it returns a claim, check it with
    :meth:`verify` and the identity the shell found. Messages to send come back from
    :meth:`start`, :meth:`read` and :meth:`verify`. Every failure is :class:`HandshakeRefused`.
    """

    def __init__(self, initiator: bool, local: LocalPeer, expected_idurl: str | None = None):
        self.initiator = initiator
        self.local = local
        self.expected_idurl = expected_idurl
        self.noise = NoiseConnection.from_name(NOISE_PROTOCOL)
        if initiator:
            self.noise.set_as_initiator()
        else:
            self.noise.set_as_responder()
        self.noise.set_keypair_from_private_bytes(Keypair.STATIC, local.static_private)
        self.noise.set_prologue(PROLOGUE)
        self.noise.start_handshake()
        self.step = Step.SEND_1 if initiator else Step.READ_1
        self.claim: HandshakePayload | None = None
        self._remote_static = b""

    @property
    def done(self) -> bool:
        return self.step is Step.DONE

    @property
    def awaiting_identity(self) -> bool:
        return self.step in (Step.VERIFY_2, Step.VERIFY_3)

    def start(self) -> bytes:
        """The initiator's first message (ephemeral key only, no identity yet)."""
        assert self.step is Step.SEND_1
        self.step = Step.READ_2
        return bytes(self.noise.write_message(b""))

    def read(self, message: bytes) -> tuple[bytes, HandshakePayload | None]:
        """Take the peer's next handshake message: (a message to send or b"", its claim)."""
        if self.step is Step.READ_1:
            if self._noise_read(message):
                raise HandshakeRefused(CloseReason.HANDSHAKE_FAILED, "payload in message 1")
            self.step = Step.READ_3
            return bytes(self.noise.write_message(self.local.payload())), None
        if self.step in (Step.READ_2, Step.READ_3):
            state = self.noise.noise_protocol.handshake_state  # the library drops it when done
            payload = self._noise_read(message)
            self._remote_static = bytes(state.rs.public_bytes)
            try:
                self.claim = decode_handshake_payload(payload)
            except MalformedFrame as exc:
                raise HandshakeRefused(CloseReason.HANDSHAKE_FAILED, str(exc)) from None
            if self.expected_idurl is not None and self.claim.idurl != self.expected_idurl:
                raise HandshakeRefused(
                    CloseReason.WRONG_PEER,
                    f"dialled {self.expected_idurl}, the peer is {self.claim.idurl}",
                )
            self.step = Step.VERIFY_2 if self.step is Step.READ_2 else Step.VERIFY_3
            return b"", self.claim
        raise HandshakeRefused(CloseReason.PROTOCOL, "handshake message out of turn")

    def verify(self, peer: PeerIdentity | None) -> bytes:
        """Check the claim against the peer's identity document; returns the initiator's last
        message (b"" on the responder). ``None``: the identity could not be fetched."""
        assert self.awaiting_identity and self.claim is not None
        claim = self.claim
        if peer is None:
            raise HandshakeRefused(CloseReason.UNKNOWN_PEER, f"cannot fetch {claim.idurl}")
        if claim.idurl not in peer.idurls:
            raise HandshakeRefused(CloseReason.WRONG_PEER, f"{claim.idurl} is not in its document")
        if claim.revision < peer.revision:
            raise HandshakeRefused(
                CloseReason.STALE_REVISION,
                f"{claim.idurl} presented revision {claim.revision}, {peer.revision} is known",
            )
        if not rsakeys.verify_pss(peer.public_key, binding(self._remote_static), claim.signature):
            raise HandshakeRefused(
                CloseReason.BAD_SIGNATURE,
                f"{claim.idurl}: the Noise static key is not signed by its identity key",
            )
        if self.step is Step.VERIFY_2:
            self.step = Step.DONE
            return bytes(self.noise.write_message(self.local.payload()))
        self.step = Step.DONE
        return b""

    def _noise_read(self, message: bytes) -> bytes:
        try:
            return bytes(self.noise.read_message(message))
        except Exception as exc:  # the library raises many unrelated types on bad input
            raise HandshakeRefused(
                CloseReason.HANDSHAKE_FAILED,
                f"bad handshake message ({type(exc).__name__}): damaged, or the peer speaks "
                f"another p2p wire version than this node's {WIRE_VERSION} (upgrade both)",
            ) from None
