"""Under journald (JOURNAL_STREAM set) every line of a record starts with its syslog priority,
so `journalctl -p warning -u bitdust@X` shows warnings and errors only (issue 16.6)."""

from __future__ import annotations

import logging

from bitdust.daemon import LogFormatter


def record(level: int, message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("bitdust", level, __file__, 1, message, None, exc_info)


def test_each_level_gets_its_syslog_priority_on_every_line() -> None:
    journal = LogFormatter(journal=True)
    assert journal.format(record(logging.DEBUG, "d")) == "<7>DEBUG bitdust: d"
    assert journal.format(record(logging.INFO, "i")) == "<6>INFO bitdust: i"
    assert journal.format(record(logging.WARNING, "w")) == "<4>WARNING bitdust: w"
    assert journal.format(record(logging.ERROR, "e")) == "<3>ERROR bitdust: e"
    assert journal.format(record(logging.CRITICAL, "c")) == "<2>CRITICAL bitdust: c"
    lines = journal.format(record(logging.ERROR, "failed", exc=True)).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


def test_no_prefix_outside_journald() -> None:
    text = LogFormatter(journal=False).format(record(logging.WARNING, "w"))
    assert not text.startswith("<") and text.endswith(" WARNING bitdust: w")
