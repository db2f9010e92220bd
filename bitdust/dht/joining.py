"""When to try joining the network again: capped exponential back-off (no I/O, no clock).

The node asks its known nodes; when none answers, it waits ``initial`` seconds, then twice as
long each time up to ``maximum``, until one answers. The node serves requests meanwhile.
"""

from __future__ import annotations

from enum import Enum


class JoinState(Enum):
    NOT_STARTED = "not started"
    GENESIS = "genesis"  # alone on purpose: the first node of a new network
    JOINING = "joining"
    WAITING = "waiting to retry"
    JOINED = "joined"


class JoinPolicy:
    """The join's state and back-off; the node drives it from its inputs and timer."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.state = JoinState.NOT_STARTED
        self.seeds: list[tuple[str, int]] = []
        self.failures = 0
        self.retry_at: float | None = None
        self._delay = initial

    def start(self, seeds: list[tuple[str, int]]) -> None:
        self.seeds = list(seeds)
        self.state = JoinState.JOINING if seeds else JoinState.GENESIS

    def attempt_failed(self, now: float) -> float:
        """Schedule the next attempt; returns the delay."""
        delay = self._delay
        self.failures += 1
        self.state = JoinState.WAITING
        self.retry_at = now + delay
        self._delay = min(delay * 2, self.maximum)
        return delay

    def retry_due(self, now: float) -> bool:
        if self.state is JoinState.WAITING and self.retry_at is not None and now >= self.retry_at:
            self.state = JoinState.JOINING
            self.retry_at = None
            return True
        return False

    def succeeded(self) -> None:
        self.state = JoinState.JOINED
        self.retry_at = None

    def describe(self, now: float) -> str:
        """One phrase for the status line."""
        if self.state is JoinState.WAITING and self.retry_at is not None:
            return (
                f"no known node answered {self.failures} times, "
                f"retry in {max(0.0, self.retry_at - now):.0f}s"
            )
        if self.state is JoinState.JOINING:
            return f"joining through {len(self.seeds)} known nodes"
        return self.state.value
