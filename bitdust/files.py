"""File helpers every part shares: atomic writes and size-bounded reads.

A file written here is never seen half-written: the data goes to a temporary file in the same
directory (created O_EXCL with the final mode, so a private key is never readable by others, not
even for a moment), is fsynced, then renamed into place; the directory is fsynced afterwards.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


class FileError(Exception):
    """A file could not be read or written; the message names it and says why."""


class FileExists(FileError):
    """:func:`atomic_write` was told not to overwrite, and the file exists."""


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int,
    overwrite: bool,
    error: type[Exception] = FileError,
) -> None:
    """Write ``data`` to ``path`` atomically: no reader ever sees a partial file.

    A temporary file is created in the same directory with ``mode`` (O_EXCL), written, fsynced and
    then renamed over ``path`` (``overwrite=True``) or hard-linked to it (``overwrite=False``, which
    fails if ``path`` exists; on file systems without hard links an O_EXCL create is used). The
    directory is fsynced afterwards. Raises :class:`error` with the reason; an existing file is
    :class:`FileExists` when ``error`` catches it (the default :class:`FileError` does), so a
    caller can tell it apart by type.
    """
    directory = path.parent
    if not overwrite and os.path.lexists(path):
        raise _exists(path, error)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists(path, error) from None
            except OSError:
                _exclusive_write(path, data, mode, error)
            tmp.unlink()
        fsync_dir(directory)
    except error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None


def read_bounded(path: Path, limit: int, *, what: str, error: type[Exception] = FileError) -> bytes:
    """Read at most ``limit`` bytes of a regular file; larger files are an error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what}: no such file") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a file") from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} is too large (over {limit} bytes)")
    return data


def _exclusive_write(path: Path, data: bytes, mode: int, error: type[Exception]) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise _exists(path, error) from None
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def _exists(path: Path, error: type[Exception]) -> Exception:
    message = f"refusing to overwrite {path}: the file exists (choose another name)"
    return FileExists(message) if issubclass(FileExists, error) else error(message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort: some file systems
    cannot fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
