"""Address tokens: proof that an address receives the datagrams we send there.

UDP source addresses can be forged, so a reply could be aimed at a victim. Until an address
echoes a token we sent it (as BitTorrent's DHT and QUIC's address validation do), a node answers
it with at most ``AMPLIFICATION`` times the bytes it received. A token is an HMAC of the address
under a secret that rotates every ``rotation`` seconds; the previous secret is still honoured, so
a token lives 5 to 10 minutes and the node keeps no per-address state. No clock: the caller
passes ``now``. The secrets come from the OS (``os.urandom``), never from a seeded generator:
a predictable secret would let anyone forge tokens.
"""

from __future__ import annotations

import hmac
import os

from bitdust.dht.wire import TOKEN_SIZE

AMPLIFICATION = 3
ROTATION = 300.0


class AddressTokens:
    def __init__(self, now: float, rotation: float = ROTATION) -> None:
        self._rotation = rotation
        self._secrets = (os.urandom(32), os.urandom(32))
        self._rotated = now

    def token(self, host: str, now: float) -> bytes:
        """The token to hand ``host`` now."""
        self._rotate(now)
        return self._mac(self._secrets[0], host)

    def valid(self, host: str, token: bytes, now: float) -> bool:
        """True when ``token`` is one we handed ``host`` in the last two rotations."""
        self._rotate(now)
        return any(hmac.compare_digest(self._mac(s, host), token) for s in self._secrets)

    def _rotate(self, now: float) -> None:
        if now - self._rotated >= self._rotation:
            self._secrets = (os.urandom(32), self._secrets[0])
            self._rotated = now

    @staticmethod
    def _mac(secret: bytes, host: str) -> bytes:
        return hmac.digest(secret, host.encode(), "sha256")[:TOKEN_SIZE]
