"""DHT parameters, in one frozen dataclass shared by the core, the store and the shell.

The tunables an operator sets (k, alpha, rpc timeout, refresh, default and max age) take their
defaults from the option registry (``bitdust.config``), their one definition; the service maps
the configured values onto them (``service.settings_from_config``). The rest follow Kademlia.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bitdust.config import OPTIONS


def _configured(name: str) -> Any:
    """The registry's default of ``services/entangled-dht/<name>``."""
    return OPTIONS[f"services/entangled-dht/{name}"].default


@dataclass(frozen=True, slots=True)
class DHTSettings:
    """Tunables of one DHT node; times are seconds, sizes bytes."""

    k: int = _configured("bucket-size")
    alpha: int = _configured("parallel-calls")
    rpc_timeout: float = _configured("rpc-timeout")
    refresh_interval: float = _configured("refresh-timeout")
    republish_interval: float = 3600.0
    maintenance_interval: float = 60.0
    default_age: int = int(_configured("default-age"))
    max_age: int = int(_configured("max-age"))
    clock_skew: int = 300
    max_records: int = 10_000
    max_bytes: int = 32 * 1024 * 1024
    max_records_per_key: int = 16
    max_records_per_key_per_network: int = 2  # per source /24 under one shared key
    max_records_per_signer: int = 256
    max_records_per_network: int = 640  # per source /24: 1/16 of the store
    max_bytes_per_signer: int = 1024 * 1024
    max_bytes_per_network: int = 2 * 1024 * 1024
    max_pending: int = 2048
    max_operations: int = 256
    replacement_cache: int = 8
    max_failures: int = 3
    ping_after: float = 60.0
    requests_per_second_per_ip: float = 200.0
    request_burst_per_ip: float = 400.0
    # CPU seconds per second of signature checks: per source network (/24) and in total.
    verify_seconds_per_network: float = 0.01
    verify_burst_per_network: float = 0.05
    verify_seconds_total: float = 0.2
    verify_burst_total: float = 0.4
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
