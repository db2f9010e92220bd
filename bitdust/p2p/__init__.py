"""Peer-to-peer sessions between identities (the ``p2p`` service): Noise XX over TCP.

Layout, one concern per module (sans-IO cores first, then the asyncio shell):

- ``wire``: the plaintext formats: the handshake payload (IDURL, revision, identity binding) and
  the msgpack frames (requests, responses, events, streams, credit, close), size-checked before
  parsing. Anything else is ``MalformedFrame``.
- ``handshake``: Noise ``XX_25519_AESGCM_SHA256`` with the identity binding of libp2p's Noise
  spec; the static key is derived from the identity key; the peer's claim is checked against the
  identity document the shell fetched.
- ``streams``: credit-based flow control of one stream (HTTP/2, QUIC).
- ``session``: one session as a state machine fed bytes and ``now``: records, frames, limits,
  timers, typed close reasons (``events.CloseReason``). No sockets, no clock.
- ``events`` / ``errors``: what the core reports, what callers catch.
- ``directory``: peers' identity documents, fetched, verified and cached.
- ``transport``: the asyncio shell: TCP listener and dialler, sessions reused by IDURL,
  requests, events and streams for services; caps per address and in total.
- ``service``: the ``p2p`` service: listens, publishes its contact, offers the API above.
"""
