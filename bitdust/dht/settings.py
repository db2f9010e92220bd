"""DHT parameters, in one frozen dataclass shared by the core, the store and the shell.

Defaults follow Kademlia and BitDust's network file except ``k`` (8 here, BitDust uses 4); every
field can be set, and ``from_network_config`` reads BitDust's ``service_entangled_dht`` names.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# BitDust's network-file names mapped onto ours.
_NETWORK_NAMES = {
    "bucket_size": "k",
    "parallel_calls": "alpha",
    "rpc_timeout": "rpc_timeout",
    "refresh_timeout": "refresh_interval",
    "default_age": "default_age",
    "max_age": "max_age",
}


@dataclass(frozen=True, slots=True)
class DHTSettings:
    """Tunables of one DHT node; times are seconds, sizes bytes."""

    k: int = 8
    alpha: int = 3
    rpc_timeout: float = 10.0
    refresh_interval: float = 600.0
    republish_interval: float = 3600.0
    maintenance_interval: float = 60.0
    default_age: int = 43200
    max_age: int = 86400
    clock_skew: int = 300
    max_records: int = 10_000
    max_bytes: int = 32 * 1024 * 1024
    max_records_per_key: int = 16
    max_records_per_signer: int = 256
    max_records_per_ip: int = 1024
    max_bytes_per_signer: int = 1024 * 1024
    max_bytes_per_ip: int = 4 * 1024 * 1024
    max_pending: int = 2048
    max_operations: int = 256
    replacement_cache: int = 8
    max_failures: int = 3
    ping_after: float = 60.0
    requests_per_second_per_ip: float = 200.0
    request_burst_per_ip: float = 400.0
    join_retry_initial: float = 2.0
    join_retry_max: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 20:
            raise ValueError(f"k={self.k}: expected 1..20 (a NODES reply must fit one datagram)")
        if not 1 <= self.alpha <= 16:
            raise ValueError(f"alpha={self.alpha}: expected 1..16")
        if self.rpc_timeout <= 0 or self.refresh_interval <= 0 or self.republish_interval <= 0:
            raise ValueError("rpc_timeout, refresh_interval and republish_interval must be > 0")
        if not 0 < self.default_age <= self.max_age:
            raise ValueError(f"default_age={self.default_age} must be in 1..max_age={self.max_age}")

    def with_changes(self, **changes: Any) -> DHTSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_network_config(cls, section: dict[str, Any], **overrides: Any) -> DHTSettings:
        """Build from BitDust's ``service_entangled_dht`` section; unknown names are ignored."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in section.items():
            ours = _NETWORK_NAMES.get(name, name)
            if ours in known:
                values[ours] = value
        values.update(overrides)
        return cls(**values)
