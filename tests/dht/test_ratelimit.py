"""The per-source rate limiter: a burst, then a steady rate; costly requests spend more."""

from __future__ import annotations

from bitdust.dht.ratelimit import RateLimiter


def test_a_burst_passes_then_the_rate_and_sources_are_independent() -> None:
    limiter = RateLimiter(rate=10.0, burst=20.0)
    assert sum(limiter.allow("10.0.0.1", 0.0) for _ in range(100)) == 20
    assert limiter.allow("10.0.0.2", 0.0)
    assert sum(limiter.allow("10.0.0.1", 1.0) for _ in range(100)) == 10


def test_a_costly_request_spends_more_of_the_budget() -> None:
    limiter = RateLimiter(rate=10.0, burst=20.0)
    assert sum(limiter.allow("10.0.0.1", 0.0, cost=5.0) for _ in range(100)) == 4
    assert not limiter.allow("10.0.0.1", 0.0, cost=1.0)


def test_the_table_of_sources_is_bounded_and_idle_sources_are_forgotten() -> None:
    limiter = RateLimiter(rate=10.0, burst=2.0, max_sources=8)
    for i in range(100):
        limiter.allow(f"10.0.0.{i}", 0.0)
    assert len(limiter) == 8
    limiter.forget_idle(10.0)
    assert len(limiter) == 0
