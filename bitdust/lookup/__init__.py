"""Nodes-lookup: nodes offering a role (proxy router, supplier) advertise it in the DHT, and
others find live, verified candidates at random.

- ``adverts``: the advert format, its bounded decoder, and ``advertise``/``withdraw``, which a
  router or a supplier calls on its own DHT (it needs no nodes-lookup service for that).
- ``service``: the ``nodes-lookup`` service, whose ``find`` reads the index, takes each
  candidate's advert from its owned key and keeps those that answer over p2p.
"""
