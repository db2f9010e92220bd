"""The one timer an asyncio shell keeps for its sans-IO core.

A core says when it next needs ``handle_timer`` (``get_timer()``, on the shell's clock); the shell
keeps exactly one loop callback for that moment and moves it when the deadline moves, as aioquic's
protocol re-arms one ``call_at``. The DHT endpoint, the p2p connections and the proxy router all
follow this rule through this class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class CoreTimer:
    """Calls ``fire`` once the ``clock`` reaches the last deadline given to :meth:`arm`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fire: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._loop = loop
        self._fire = fire
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    @property
    def deadline(self) -> float | None:
        return self._at

    def arm(self, when: float | None) -> None:
        """Fire at ``when`` (on ``clock``; a moment past fires at once), or never for ``None``.
        The same deadline again keeps the callback already scheduled."""
        if when == self._at:
            return
        self.cancel()
        if when is not None:
            self._at = when
            self._handle = self._loop.call_later(max(0.0, when - self._clock()), self._on_fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None

    def _on_fire(self) -> None:
        self._handle = None
        self._at = None
        self._fire()
