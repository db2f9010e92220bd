"""A log file written outside systemd (`bitdust daemon`'s) is rotated (issue 16.6): real files,
real descriptors, and a real process whose stderr is the file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bitdust.log_file import LogFileRotation, RotatingStreamHandler

REPO = Path(__file__).resolve().parents[1]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_rotation_moves_the_file_aside_and_keeps_writing_on_the_same_descriptors(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bitdust.log"
    first = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    second = os.dup(first)  # stdout and stderr of a daemon share the file
    stream = open(first, "w", closefd=False)  # noqa: SIM115 - closed below; as sys.stderr on fd 2
    try:
        handler = RotatingStreamHandler(stream, LogFileRotation(path, (first, second), 200, 2))
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.Logger("rotation-test")
        logger.addHandler(handler)
        for number in range(40):
            logger.warning("line %02d of the node's log", number)
        os.write(second, b"a traceback written straight to fd 2\n")
        written = [lines_of(path.with_name(f"bitdust.log.{n}")) for n in (2, 1)] + [lines_of(path)]
    finally:
        stream.close()
        os.close(first)
        os.close(second)
    assert not path.with_name("bitdust.log.3").exists(), "more files kept than asked"
    kept = [line for part in written for line in part]
    assert kept[-1] == "a traceback written straight to fd 2"
    numbers = [int(line.split()[1]) for line in kept if line.startswith("line ")]
    assert numbers == list(range(numbers[0], 40)), "lines lost or reordered across files"
    for part in written[:2]:
        assert 200 <= sum(len(line) + 1 for line in part) < 200 + 40
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_daemon_whose_stderr_is_a_file_rotates_it(tmp_path: Path) -> None:
    """setup_logging, as `bitdust run` calls it under `bitdust daemon` (stdout and stderr on
    the log file), rotates that file; journald's socket or a pipe is left alone."""
    script = textwrap.dedent(
        """
        import logging, sys
        import bitdust.log_file
        bitdust.log_file.MAX_BYTES = 2000
        from bitdust.daemon import setup_logging
        setup_logging("info")
        for number in range(400):
            logging.getLogger("bitdust").info("record %03d", number)
        print("the last line, on stdout", flush=True)
        """
    )
    log = tmp_path / "bitdust.log"
    with open(log, "ab") as file:
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            stdout=file,
            stderr=file,
            env={"PATH": os.environ["PATH"]},
            timeout=60,
            check=True,
        )
    rotated = sorted(tmp_path.glob("bitdust.log.*"))
    assert [p.name for p in rotated] == [f"bitdust.log.{n}" for n in range(1, 6)]
    assert lines_of(log)[-1] == "the last line, on stdout"
    assert "record 399" in log.read_text()
    assert "record 398" in (log.read_text() + rotated[0].read_text())

    piped = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=60,
        check=True,
    )
    assert piped.stderr.count("record ") == 400
    assert "no longer rotated" not in piped.stderr
