"""BitDust's DHT (the ``entangled-dht`` service): Kademlia over UDP, sans-IO core + asyncio shell.

Layout, one concern per module:

- ``wire``: the datagram format. One msgpack map per datagram carrying a protocol version
  (``VERSION``), a message type, a 20-byte request id and the sender's claimed node id; at most
  ``MAX_DATAGRAM`` (8 KiB) and validated field by field. Anything else is ``MalformedMessage``.
- ``routing``: 160-bit ids, XOR distance, k-buckets with least-recently-seen eviction. It returns
  actions ("ping the oldest contact") instead of scheduling anything, and learns only peers that
  spoke to us directly, at the address their datagrams came from.
- ``records``: what is signed. A record's signature covers a domain prefix
  (``b"bitdust-dht-record-v1"``) and the canonical bytes of its key, value, created and expiry
  times, scheme, public key, owner IDURL and, for an owned key, its name (the key is then
  ``owned_key(public key, name)``, as BEP 44 does: only that signer can write it). Records are
  verified before a node stores one and before a lookup reports one; a STORE's signature check
  spends a CPU-time budget of its source /24.
- ``schemes``: Ed25519 (a node's own key) and RSA-PSS over an identity key (``bitdust.rsakeys``
  rules). A node accepts the verifiers it is given when it is built; there is no registry.
- ``store``: records held per (key, signer), newer replaces older, bounded per node, key, signer
  and source /24; a full store evicts, from the network holding the most, the records furthest
  from the node's id. Every change goes to the ``Persistence`` the node is given.
- ``persistence``: that interface, and ``MemoryPersistence`` (simulator, tests). ``database``:
  the SQLite one (WAL, ``PRAGMA user_version`` = schema version 1, forward migrations) holding
  records, published records, the routing table, the random node id and the node's Ed25519
  key; its writes are batched and committed by the shell, never inside ``receive_datagram``.
- ``lookup``: one ``Lookup`` object per iterative lookup (``LookupMode`` NODE, VALUE, STORE).
- ``tokens``: address tokens; until an address echoes one, replies to it are at most 3x its
  request (no amplification). ``owners``: shows a record's owner IDURL only when verified.
- ``events``: what a node reports (``LookupDone``, ``ValueFound``, ...).
- ``ratelimit``: the per-source token bucket, and ``network_of`` (the /24 fairness unit).
- ``joining``: the join back-off policy.
- ``protocol``: ``DHTNode``, the state machine: RPCs matched on request id *and* address,
  serving requests, driving lookups, STORE to the k closest, joining with back-off, bucket
  refresh, republish by publisher and holders, expiry.
- ``transport``: the thin asyncio shell (UDP endpoint, one timer, futures) and ``start_dht``.

Clocks: the core is given a monotonic ``now``; record times are Unix seconds, computed as
``now + wall_offset``, which the shell keeps in step with the wall clock.
"""
