"""bitdust.logs.RateLimitedLog: a flood of one message becomes a few lines and a count."""

from __future__ import annotations

import logging

from bitdust.logs import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repeated_lines_are_suppressed_and_counted(caplog):
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.flood"), burst=3, interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.flood"):
        for attempt in range(1000):
            limited.warning("intake busy: refused %s", f"127.0.1.3:{attempt}")
        limited.info("another message %d", 1)  # its own budget
        clock.now += 60
        limited.warning("intake busy: refused %s", "127.0.1.3:9")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "intake busy: refused 127.0.1.3:0",
        "intake busy: refused 127.0.1.3:1",
        "intake busy: refused 127.0.1.3:2",
        "another message 1",
        "intake busy: refused 127.0.1.3:9 (997 similar lines suppressed before)",
    ]
    assert all(record.exc_info is None for record in caplog.records)


def test_nothing_is_counted_for_a_disabled_level(caplog):
    limited = RateLimitedLog(logging.getLogger("test.quiet"), burst=1)
    with caplog.at_level(logging.WARNING, logger="test.quiet"):
        for _ in range(5):
            limited.debug("noise")
        limited.warning("kept")
    assert [record.getMessage() for record in caplog.records] == ["kept"]
