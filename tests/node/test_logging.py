"""Log lines under journald carry their syslog priority, so `journalctl -p warning` works."""

from __future__ import annotations

import logging
import re
import sys

from bitdust.daemon import LogFormatter


def record(level: int, message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bitdust.x", level, __file__, 1, message, None, exc_info)


def test_under_journald_every_line_starts_with_its_priority() -> None:
    journal = LogFormatter(journal=True)
    assert journal.format(record(logging.INFO, "ready")) == "<6>INFO bitdust.x: ready"
    assert journal.format(record(logging.WARNING, "slow")) == "<4>WARNING bitdust.x: slow"
    assert journal.format(record(logging.DEBUG, "tick")) == "<7>DEBUG bitdust.x: tick"
    problems = journal.format(record(logging.ERROR, "port 1 taken\nport 2 taken"))
    assert problems.splitlines() == ["<3>ERROR bitdust.x: port 1 taken", "<3>port 2 taken"]
    traceback = journal.format(record(logging.DEBUG, "unexpected", exc=True)).splitlines()
    assert len(traceback) > 2 and all(line.startswith("<7>") for line in traceback)


def test_on_a_terminal_lines_carry_the_time_and_no_priority() -> None:
    line = LogFormatter(journal=False).format(record(logging.ERROR, "failed"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR bitdust.x: failed", line)
