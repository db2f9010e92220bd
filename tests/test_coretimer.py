"""CoreTimer: one callback at the core's deadline, moved when it moves, on a real event loop."""

from __future__ import annotations

import asyncio

from bitdust.coretimer import CoreTimer


async def test_fires_once_at_the_last_deadline_it_was_given() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = CoreTimer(loop, lambda: fired.append(loop.time()), loop.time)
    start = loop.time()
    timer.arm(start + 10)  # moved earlier before it is due
    timer.arm(start + 0.05)
    timer.arm(start + 0.05)  # the same deadline keeps the one callback
    await asyncio.sleep(0.2)
    assert len(fired) == 1 and fired[0] >= start + 0.05
    assert timer.deadline is None


async def test_none_and_cancel_stop_it_and_a_past_deadline_fires_at_once() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    timer = CoreTimer(loop, lambda: fired.append("x"), loop.time)
    timer.arm(loop.time() + 0.02)
    timer.arm(None)
    timer.arm(loop.time() + 0.02)
    timer.cancel()
    await asyncio.sleep(0.1)
    assert fired == []
    timer.arm(loop.time() - 5)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert fired == ["x"]


async def test_it_follows_the_cores_own_clock() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    core_now = 1000.0  # a core whose clock is not the loop's
    timer = CoreTimer(loop, lambda: fired.append("x"), lambda: core_now)
    timer.arm(core_now + 0.05)
    await asyncio.sleep(0.01)
    assert fired == []
    await asyncio.sleep(0.15)
    assert fired == ["x"]
