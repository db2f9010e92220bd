"""When stored data needs work: which suppliers to replace, which chunks to rebuild.

Pure decisions on plain numbers and times, no I/O: the customer service acts on them, and the
durability model (``tools/durability.py``) drives the very same functions through simulated years
of supplier churn, so the figures in docs/durability.md are those of the code that runs.

Repair starts when a chunk is down to ``threshold`` healthy fragments (Storj's repair threshold),
not at the last one: with k-of-N, losing N - k fragments is survivable and one more is not, so
waiting for k would leave no margin while the rebuild runs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class SupplierState(enum.StrEnum):
    """What the customer knows of one hired supplier."""

    OK = "ok"
    UNREACHABLE = "unreachable"  # did not answer lately; replaced once away longer than a limit
    FAILING = "failing"  # failed audits; replaced once they reach the limit
    REPLACE = "replace"  # to be replaced (by hand, or it left: refused us as a customer)


@dataclass(frozen=True)
class SupplierHealth:
    """One supplier's record: when it last answered, since when it has not, audit failures in
    a row, and whether it must go whatever the figures say."""

    position: int
    last_seen: float | None = None
    away_since: float | None = None
    audit_failures: int = 0
    replace: bool = False


@dataclass(frozen=True)
class RepairPolicy:
    """The customer's rules: ``k`` of ``n`` fragments restore a chunk; a chunk with at most
    ``threshold`` healthy fragments is rebuilt; a supplier away longer than ``away_limit``
    seconds, or failing ``audit_failures_limit`` audits in a row, is replaced."""

    k: int
    n: int
    threshold: int
    away_limit: float
    audit_failures_limit: int

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k = {self.k} must be 1 to n = {self.n}")
        if not self.k <= self.threshold < self.n:
            raise ValueError(
                f"the repair threshold {self.threshold} must be at least k = {self.k} "
                f"and below n = {self.n}"
            )

    @staticmethod
    def default_threshold(k: int, n: int) -> int:
        """Half-way between k and n (rounded down, at least k, below n): 3 for 2-of-4, 5 for
        4-of-7, 19 for 13-of-26; n = k leaves no margin to wait for, so repair at once."""
        return max(k, min(n - 1, k + (n - k) // 2))

    def state(self, health: SupplierHealth, now: float) -> SupplierState:
        if health.replace:
            return SupplierState.REPLACE
        if health.audit_failures >= self.audit_failures_limit:
            return SupplierState.REPLACE
        if health.away_since is not None and now - health.away_since > self.away_limit:
            return SupplierState.REPLACE
        if health.away_since is not None:
            return SupplierState.UNREACHABLE
        if health.audit_failures:
            return SupplierState.FAILING
        return SupplierState.OK

    def to_replace(self, suppliers: Iterable[SupplierHealth], now: float) -> list[int]:
        """Positions whose supplier must be replaced now."""
        return [
            health.position
            for health in suppliers
            if self.state(health, now) is SupplierState.REPLACE
        ]

    def needs_repair(self, healthy: int) -> bool:
        return healthy <= self.threshold

    def lost(self, healthy: int) -> bool:
        return healthy < self.k


def healthy_fragments(states: Sequence[str], bad_positions: set[int]) -> list[int]:
    """Indices of a chunk's fragments that count as healthy: stored (not marked bad) and on a
    supplier that is not being replaced. ``states[i]`` is fragment i's placement state."""
    return [
        index
        for index, state in enumerate(states)
        if state == "stored" and index not in bad_positions
    ]
