"""Log lines that outside input can trigger, bounded: a flood of bad requests must not become a
flood of log lines (journald rate-limits a whole unit, and would drop the lines that matter).

:class:`RateLimitedLog` wraps a :class:`logging.Logger`: each message format gets ``burst`` lines
per ``interval`` seconds; the others are counted, and the next line that gets through says how many
were suppressed. Any package may use it for lines a remote peer can cause. It never logs a
traceback: input from outside is an expected failure, told in one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BURST = 5
DEFAULT_INTERVAL = 60.0
MAX_FORMATS = 1000  # distinct message formats tracked; formats are code constants, so few


@dataclass(slots=True)
class _Budget:
    window_start: float
    emitted: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most ``burst`` lines per message format per ``interval``; the rest counted."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = DEFAULT_BURST,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._budgets: dict[tuple[int, str], _Budget] = {}
        self._lock = threading.Lock()  # shared by the event loop and worker threads

    def debug(self, msg: str, *args: object) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.log(logging.ERROR, msg, *args)

    def log(self, level: int, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ``level`` unless this format used its budget; one line, no
        traceback."""
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        with self._lock:
            budget = self._budgets.get((level, msg))
            if budget is None or now - budget.window_start >= self.interval:
                suppressed = budget.suppressed if budget is not None else 0
                if budget is None and len(self._budgets) >= MAX_FORMATS:
                    self._budgets.clear()
                budget = self._budgets[(level, msg)] = _Budget(now)
            else:
                suppressed = 0
            if budget.emitted >= self.burst:
                budget.suppressed += 1
                return
            budget.emitted += 1
        if suppressed:
            self.logger.log(level, msg + " (%d similar lines suppressed before)", *args, suppressed)
        else:
            self.logger.log(level, msg, *args)
