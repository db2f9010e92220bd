"""What a routed node and its router say over their authenticated p2p session.

- request ``proxy/register`` (empty): route me; the answer is :class:`Registration` — the
  contact to publish (``tcp://router-host:port/<route>``) and how long the route lasts unless
  registered again. Registering again renews it, and tells the node its router is alive.
- event ``proxy/incoming`` (the token): a peer waits at the router; take it with an ACCEPT
  preamble (:meth:`bitdust.p2p.transport.P2PEndpoint.accept_relayed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from bitdust.p2p.directory import Contact

REGISTER = "proxy/register"
INCOMING = "proxy/incoming"
MAX_MESSAGE = 1024
MIN_LEASE, MAX_LEASE = 1.0, 86400.0  # a router's lease outside these is refused


class BadMessage(ValueError):
    """A router or routed node sent something that is not this protocol."""


@dataclass(frozen=True, slots=True)
class Registration:
    contact: str
    lease: float

    def encode(self) -> bytes:
        return msgpack.packb({"contact": self.contact, "lease": self.lease})

    @classmethod
    def decode(cls, data: bytes) -> Registration:
        obj = _unpack(data)
        contact, lease = obj.get("contact"), obj.get("lease")
        if not isinstance(contact, str) or type(lease) not in (int, float):
            raise BadMessage("a registration needs a contact and a lease in seconds")
        if not MIN_LEASE <= lease <= MAX_LEASE:  # NaN fails this too
            raise BadMessage(f"a lease of {lease} s (from {MIN_LEASE:g} to {MAX_LEASE:g} s)")
        return cls(contact, float(lease))

    def router(self) -> Contact:
        """The router's address and the route, from the contact (BadMessage when malformed)."""
        scheme, _, rest = self.contact.partition("://")
        address, _, route = rest.partition("/")
        host, _, port = address.rpartition(":")
        if scheme != "tcp" or not host or not port.isdigit() or not route:
            raise BadMessage(f"{self.contact!r} is not a tcp://host:port/route contact")
        return Contact(host.strip("[]"), int(port), route)


def encode_token(token: str) -> bytes:
    return msgpack.packb({"token": token})


def decode_token(data: bytes) -> str:
    token = _unpack(data).get("token")
    if not isinstance(token, str) or not token:
        raise BadMessage("an incoming notice needs a token")
    return token


def _unpack(data: bytes) -> dict:
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"proxy message of {len(data)} bytes (at most {MAX_MESSAGE})")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise BadMessage(f"proxy message is not msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise BadMessage("proxy message is not a map")
    return obj
