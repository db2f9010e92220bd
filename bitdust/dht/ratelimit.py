"""Per-source rate limiting: bounds the work (and reply traffic) one address can cause.

A token bucket kept as one float per source (GCRA): the time at which the source's bucket would
be full again. A burst of ``burst`` units passes, then ``rate`` units per second. Units are what
the caller counts: requests (cost 1), or CPU seconds of signature checks. The table is bounded: when
full, the oldest entry goes, which can only make the limiter more lenient, never wrong.
"""

from __future__ import annotations

import functools
import ipaddress

MAX_SOURCES = 4096


class RateLimiter:
    """``allow(source, now, cost)``: whether ``source`` may spend ``cost`` units now."""

    def __init__(self, rate: float, burst: float, max_sources: int = MAX_SOURCES) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate={rate}, burst={burst}: expected both > 0")
        self.interval = 1.0 / rate
        self.burst = burst
        self.max_sources = max_sources
        self._tat: dict[str, float] = {}

    def allow(self, source: str, now: float, cost: float = 1.0) -> bool:
        tat = self._tat.pop(source, None)
        if tat is None and len(self._tat) >= self.max_sources:
            del self._tat[next(iter(self._tat))]
        tat = now if tat is None or tat < now else tat
        # (a nanosecond of slack: sums of float intervals must not cost a whole token)
        allowed = tat + cost * self.interval - now <= self.burst * self.interval + 1e-9
        self._tat[source] = tat + cost * self.interval if allowed else tat
        return allowed

    def forget_idle(self, now: float) -> None:
        """Drop sources whose bucket is full again: they are as good as new."""
        self._tat = {source: tat for source, tat in self._tat.items() if tat > now}

    def __len__(self) -> int:
        return len(self._tat)


@functools.lru_cache(maxsize=4096)
def network_of(host: str) -> str:
    """The network an address belongs to for fairness: its IPv4 /24 or IPv6 /48.

    One machine (or one cheap VPS block) gets one share, however many addresses it uses.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
