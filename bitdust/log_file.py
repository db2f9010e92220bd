"""Rotation of the log file a node writes outside systemd.

Under systemd the node logs to journald, which keeps its own limits. Started by `bitdust daemon`
(or with stderr redirected to a file by hand), it writes to a plain file that would grow
forever: once the file passes a size, it is renamed ``NAME.1`` (older ones shift to ``.2`` ...,
the oldest beyond the count is dropped) and a new file takes its place on the same descriptors,
so that every later write, the logging module's or a crash's traceback, lands in the new file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TextIO

MAX_BYTES = 10 * 1024 * 1024  # a rotated file: about a week of an info-level node's lines
KEEP = 5  # NAME.1 ... NAME.5 are kept: 60 MiB at most with the live file
STDOUT, STDERR = 1, 2


class LogFileRotation:
    """Rotates the regular file open on ``fds`` (all pointing at ``path``) past ``max_bytes``."""

    def __init__(
        self, path: Path, fds: tuple[int, ...], max_bytes: int = MAX_BYTES, keep: int = KEEP
    ) -> None:
        if max_bytes < 1 or keep < 1:
            raise ValueError("max_bytes and keep must be positive")
        self.path = path
        self.fds = fds
        self.max_bytes = max_bytes
        self.keep = keep

    @classmethod
    def of_stderr(cls) -> LogFileRotation | None:
        """The rotation of this process's stderr when it is a log file; None for a terminal, a
        pipe or journald's socket. stdout is rotated with it when it is the same file."""
        try:
            opened = os.fstat(STDERR)
            path = Path(os.readlink(f"/proc/self/fd/{STDERR}"))
            named = path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(opened.st_mode) or not _same_file(opened, named):
            return None
        fds = [STDERR]
        try:
            if _same_file(os.fstat(STDOUT), opened):
                fds.insert(0, STDOUT)
        except OSError:
            pass
        return cls(path, tuple(fds), MAX_BYTES, KEEP)

    def due(self) -> bool:
        return os.fstat(self.fds[-1]).st_size >= self.max_bytes

    def rotate(self) -> None:
        """NAME → NAME.1 (NAME.1 → NAME.2, ...), then a new NAME on the same descriptors, with the
        old file's mode. Raises OSError when the directory refuses it."""
        mode = stat.S_IMODE(os.fstat(self.fds[-1]).st_mode)
        for index in range(self.keep - 1, 0, -1):
            older = self._numbered(index)
            if older.exists():
                os.replace(older, self._numbered(index + 1))
        os.replace(self.path, self._numbered(1))
        fresh = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, mode)
        try:
            for fd in self.fds:
                os.dup2(fresh, fd)
        finally:
            os.close(fresh)

    def _numbered(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")


class RotatingStreamHandler(logging.StreamHandler):
    """A StreamHandler on a stream whose descriptor a :class:`LogFileRotation` rotates: checked
    after each record, so a file ends on a whole line. A rotation the file system refuses stops
    rotating, says so once in the log, and the node carries on."""

    def __init__(self, stream: TextIO, rotation: LogFileRotation) -> None:
        super().__init__(stream)
        self.rotation: LogFileRotation | None = rotation

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.rotation is None:
            return
        try:
            if self.rotation.due():
                self.flush()
                self.rotation.rotate()
        except OSError as exc:
            path, self.rotation = self.rotation.path, None
            self.stream.write(f"log file {path} is no longer rotated: {exc}\n")
            self.flush()


def _same_file(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)
