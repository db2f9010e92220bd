"""Identity layer: BitDust identity documents, their signatures, the account key, key backups,
the identity server (storage policy, TCP intake, HTTP) and identity propagation.

Plain library code: no settings lookups and no global state. The node's services, REST routes and
CLI call in with the values they read from the configuration.
"""
