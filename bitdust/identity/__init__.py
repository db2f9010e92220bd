"""Identity layer: BitDust identity documents, their signatures, the account key, key backups,
the identity server (rules, TCP intake, HTTP, files), its clients and identity propagation.

Library modules read no settings and keep no global state; the two services
(``server_service.py``, ``propagate_service.py``) are where settings become calls.
"""
