"""A supplier's ledger and fragment files: what each customer stored, within its quota.

Everything a customer sends is opaque bytes under a 32-byte id; nothing here interprets it. The
store must never let a customer reach another's fragments or a path outside its root, never keep
a fragment that is partial or other than announced, and never serve one that changed on disk.

Layout under ``root``: ``supplier.sqlite3`` (customers, fragments; versioned by
:mod:`bitdust.sqlite_file`) and ``fragments/<customer>/<id hex[:2]>/<id hex>``, where
``<customer>`` is 16 hex digits of the SHA-256 of the customer's IDURL. Ids are exactly 32 bytes
and hex on disk, so a path can never escape ``root``.

Crash safety: a fragment is streamed to a temporary file beside its place, checked (size,
SHA-256), fsynced and renamed, and only then recorded; a fragment being replaced loses its row
before the rename. So the ledger never names a file that is partial or other than its row says;
a crash leaves at most an unrecorded file (never served, overwritten by the next put of its id,
removed with the customer) and temporary files, which :class:`FragmentStore` removes at open.

The API is synchronous and thread-safe: the service calls it in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from bitdust.files import TEMP_SUFFIX, fsync_dir
from bitdust.sqlite_file import open_versioned
from bitdust.storage.wire import DIGEST_SIZE, ID_SIZE, MAX_FRAGMENT

log = logging.getLogger(__name__)

DB_NAME = "supplier.sqlite3"
FRAGMENTS = "fragments"
READ_CHUNK = 256 * 1024
WHAT = "supplier ledger"


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE customers (idurl TEXT PRIMARY KEY, quota INTEGER NOT NULL,"
        " since INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE fragments (customer TEXT NOT NULL"
        " REFERENCES customers (idurl) ON DELETE CASCADE, id BLOB NOT NULL,"
        " size INTEGER NOT NULL, sha256 BLOB NOT NULL, stored_at INTEGER NOT NULL,"
        " PRIMARY KEY (customer, id)) WITHOUT ROWID"
    )


#: ``MIGRATIONS[n]`` upgrades a ledger from version n to n + 1.
MIGRATIONS = (_migrate_0_to_1,)


class FragmentStoreError(Exception):
    """A request the store refuses; the message is for the customer, ``reason`` for counters."""

    reason = "refused"


class NotACustomer(FragmentStoreError):
    reason = "not_a_customer"

    def __init__(self) -> None:
        super().__init__("not a customer of this supplier: hire it first")


class NoSpace(FragmentStoreError):
    reason = "no_space"

    def __init__(self, free: int, donated: int) -> None:
        super().__init__(f"no space: this supplier has {free} free of {donated} donated")


class OverQuota(FragmentStoreError):
    reason = "over_quota"

    def __init__(self, used: int, quota: int, size: int) -> None:
        super().__init__(
            f"over quota: {used} of {quota} bytes used (a fragment of {size} bytes does not fit)"
        )


class NoSuchFragment(FragmentStoreError):
    reason = "no_such_fragment"

    def __init__(self) -> None:
        super().__init__("no such fragment")


class BadFragment(FragmentStoreError):
    """The customer's id, size, digest, range or bytes break the rules."""

    reason = "bad_fragment"


class DiskError(FragmentStoreError):
    """The supplier's disk failed a write; nothing of that write is left behind."""

    reason = "disk"


class FragmentCorrupt(FragmentStoreError):
    """A stored fragment no longer matches its ledger row (bit rot, a truncated file)."""

    reason = "corrupt"


@dataclass(frozen=True, slots=True)
class CustomerUsage:
    """One customer's contract and what it stores (bytes; ``since`` is Unix time)."""

    idurl: str
    quota: int
    used: int
    fragments: int
    since: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Usage:
    """The whole store: customers, the quotas promised to them, bytes and fragments stored."""

    customers: int
    allotted: int
    used: int
    fragments: int


def fragment_hex(fragment_id: bytes) -> str:
    """The on-disk name of ``fragment_id``; BadFragment unless it is exactly 32 bytes."""
    if not isinstance(fragment_id, bytes) or len(fragment_id) != ID_SIZE:
        raise BadFragment(f"a fragment id is exactly {ID_SIZE} bytes")
    return fragment_id.hex()


def customer_dir_name(idurl: str) -> str:
    """The customer's directory: its IDURL never becomes a path itself."""
    return hashlib.sha256(idurl.encode("utf-8")).hexdigest()[:16]


def disk_error(exc: OSError) -> DiskError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError("the supplier's disk is full")
    return DiskError(f"the supplier cannot store the fragment: {exc.strerror or exc}")


class FragmentStore:
    """The ledger and fragment files under ``root`` (created 0700; files 0600)."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock
        self._lock = threading.Lock()  # the ledger and the reservations, never held for file I/O
        self._reserved: dict[str, int] = {}  # bytes of puts in flight, per customer
        self._writing: set[tuple[str, bytes]] = set()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = open_versioned(root / DB_NAME, MIGRATIONS, WHAT)
        self.fragments_dir = root / FRAGMENTS
        self.fragments_dir.mkdir(mode=0o700, exist_ok=True)
        self._remove_temporary_files()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _remove_temporary_files(self) -> None:
        """Puts a crash interrupted: never recorded, so nobody can ask for them."""
        for customer in self.fragments_dir.iterdir():
            for prefix in customer.iterdir() if customer.is_dir() else ():
                for entry in prefix.iterdir() if prefix.is_dir() else ():
                    if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                        log.info("supplier: removing %s, left by an interrupted put", entry)
                        entry.unlink(missing_ok=True)

    def _path(self, customer: str, hex_id: str) -> Path:
        return self.fragments_dir / customer_dir_name(customer) / hex_id[:2] / hex_id

    # -- contracts ------------------------------------------------------------------------------

    def hire(self, customer: str, quota: int, donated: int) -> CustomerUsage:
        """Make ``customer`` a customer with ``quota`` bytes (again: change its quota, never
        below what it stores), while all quotas fit in ``donated``; NoSpace otherwise."""
        with self._lock:
            (others,) = self._db.execute(
                "SELECT COALESCE(SUM(quota), 0) FROM customers WHERE idurl != ?", (customer,)
            ).fetchone()
            quota = max(quota, self._used(customer) + self._reserved.get(customer, 0))
            if others + quota > donated:
                raise NoSpace(max(0, donated - others), donated)
            self._db.execute(
                "INSERT INTO customers VALUES (?, ?, ?)"
                " ON CONFLICT (idurl) DO UPDATE SET quota = excluded.quota",
                (customer, quota, int(self.clock())),
            )
            usage = self._customer(customer)
        assert usage is not None
        return usage

    def release(self, customer: str) -> int:
        """End ``customer``'s contract and delete its fragments; the bytes freed."""
        with self._lock:
            usage = self._customer(customer)
            if usage is None:
                raise NotACustomer()
            self._db.execute("DELETE FROM customers WHERE idurl = ?", (customer,))  # cascades
        shutil.rmtree(self.fragments_dir / customer_dir_name(customer), onerror=_log_rmtree)
        return usage.used

    def customers(self) -> list[CustomerUsage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT c.idurl, c.quota, COALESCE(SUM(f.size), 0), COUNT(f.id), c.since"
                " FROM customers c LEFT JOIN fragments f ON f.customer = c.idurl"
                " GROUP BY c.idurl ORDER BY c.idurl"
            ).fetchall()
        return [CustomerUsage(*row) for row in rows]

    def usage(self) -> Usage:
        with self._lock:
            customers, allotted = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(quota), 0) FROM customers"
            ).fetchone()
            used, fragments = self._db.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM fragments"
            ).fetchone()
        return Usage(customers, allotted, used, fragments)

    def _customer(self, customer: str) -> CustomerUsage | None:
        row = self._db.execute(
            "SELECT c.idurl, c.quota, COALESCE(SUM(f.size), 0), COUNT(f.id), c.since"
            " FROM customers c LEFT JOIN fragments f ON f.customer = c.idurl"
            " WHERE c.idurl = ? GROUP BY c.idurl",
            (customer,),
        ).fetchone()
        return None if row is None else CustomerUsage(*row)

    def _quota(self, customer: str) -> int:
        row = self._db.execute(
            "SELECT quota FROM customers WHERE idurl = ?", (customer,)
        ).fetchone()
        if row is None:
            raise NotACustomer()
        return int(row[0])

    def _used(self, customer: str) -> int:
        return int(
            self._db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM fragments WHERE customer = ?", (customer,)
            ).fetchone()[0]
        )

    def _row(self, customer: str, fragment_id: bytes) -> tuple[int, bytes]:
        """(size, sha256) of a fragment ``customer`` stored; NoSuchFragment otherwise, whoever
        else may hold that id."""
        self._quota(customer)
        row = self._db.execute(
            "SELECT size, sha256 FROM fragments WHERE customer = ? AND id = ?",
            (customer, fragment_id),
        ).fetchone()
        if row is None:
            raise NoSuchFragment()
        return int(row[0]), bytes(row[1])

    # -- fragments ------------------------------------------------------------------------------

    def begin_put(
        self, customer: str, fragment_id: bytes, size: int, sha256: bytes
    ) -> PendingFragment:
        """Reserve ``size`` bytes of ``customer``'s quota and open the temporary file the
        fragment is written to; use the result as a context manager (it is dropped unless
        committed). Refused before any byte is read: not a customer, over quota, bad header."""
        hex_id = fragment_hex(fragment_id)
        if type(size) is not int or not 0 <= size <= MAX_FRAGMENT:
            raise BadFragment(f"a fragment has 0 to {MAX_FRAGMENT} bytes")
        if not isinstance(sha256, bytes) or len(sha256) != DIGEST_SIZE:
            raise BadFragment(f"a fragment's SHA-256 is {DIGEST_SIZE} bytes")
        key = (customer, fragment_id)
        with self._lock:
            quota = self._quota(customer)
            if key in self._writing:
                raise BadFragment("this fragment is being written already")
            replaced = self._db.execute(
                "SELECT size FROM fragments WHERE customer = ? AND id = ?", key
            ).fetchone()
            used = self._used(customer) + self._reserved.get(customer, 0)
            if used - (replaced[0] if replaced else 0) + size > quota:
                raise OverQuota(used, quota, size)
            self._reserved[customer] = self._reserved.get(customer, 0) + size
            self._writing.add(key)
        path = self._path(customer, hex_id)
        try:
            for directory in (path.parent.parent, path.parent):
                directory.mkdir(mode=0o700, exist_ok=True)
            fd, temporary = tempfile.mkstemp(  # 0600, O_EXCL
                prefix=f".{hex_id}.", suffix=TEMP_SUFFIX, dir=path.parent
            )
        except OSError as exc:
            self._unreserve(customer, fragment_id, size)
            raise disk_error(exc) from None
        return PendingFragment(self, customer, fragment_id, size, sha256, path, Path(temporary), fd)

    def _unreserve(self, customer: str, fragment_id: bytes, size: int) -> None:
        with self._lock:
            self._writing.discard((customer, fragment_id))
            left = self._reserved.get(customer, 0) - size
            if left > 0:
                self._reserved[customer] = left
            else:
                self._reserved.pop(customer, None)

    def _keep(self, pending: PendingFragment) -> None:
        """Put a checked, fsynced temporary file in place and record it (see the module's
        crash-safety note: the old row goes first, the new one last)."""
        key = (pending.customer, pending.fragment_id)
        with self._lock:
            self._quota(pending.customer)
            self._db.execute("DELETE FROM fragments WHERE customer = ? AND id = ?", key)
        os.replace(pending.temporary, pending.path)
        fsync_dir(pending.path.parent)
        with self._lock:
            try:
                self._quota(pending.customer)  # released meanwhile: the file goes with it
            except NotACustomer:
                pending.path.unlink(missing_ok=True)
                raise
            self._db.execute(
                "INSERT INTO fragments VALUES (?, ?, ?, ?, ?)",
                (*key, pending.size, pending.sha256, int(self.clock())),
            )

    def open_fragment(self, customer: str, fragment_id: bytes) -> FragmentReader:
        """A reader of ``customer``'s fragment that checks it against the ledger as it goes."""
        fragment_hex(fragment_id)
        with self._lock:
            size, sha256 = self._row(customer, fragment_id)
        path = self._path(customer, fragment_id.hex())
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the reader owns and closes it
        except FileNotFoundError:
            raise FragmentCorrupt("the fragment is missing from this supplier's disk") from None
        return FragmentReader(handle, size, sha256)

    def delete(self, customer: str, fragment_ids: Iterable[bytes]) -> tuple[int, int]:
        """Delete those of ``fragment_ids`` that ``customer`` stores (the others are skipped:
        deleting twice is harmless); returns (deleted, bytes freed). Rows go before files."""
        wanted = {fragment_id: fragment_hex(fragment_id) for fragment_id in fragment_ids}
        with self._lock:
            self._quota(customer)
            deleted: list[tuple[str, int]] = []
            with self._db:
                self._db.execute("BEGIN")
                for fragment_id, hex_id in wanted.items():
                    row = self._db.execute(
                        "DELETE FROM fragments WHERE customer = ? AND id = ? RETURNING size",
                        (customer, fragment_id),
                    ).fetchone()
                    if row is not None:
                        deleted.append((hex_id, int(row[0])))
        for hex_id, _ in deleted:
            with contextlib.suppress(FileNotFoundError):
                self._path(customer, hex_id).unlink()
        return len(deleted), sum(size for _, size in deleted)

    def listing(
        self, customer: str, after: bytes, limit: int
    ) -> tuple[list[tuple[bytes, int]], bool]:
        """``customer``'s fragments as (id, size) in id order after ``after``, at most
        ``limit``, and whether more follow."""
        fragment_hex(after)
        with self._lock:
            self._quota(customer)
            rows = self._db.execute(
                "SELECT id, size FROM fragments WHERE customer = ? AND id > ? ORDER BY id LIMIT ?",
                (customer, after, limit + 1),
            ).fetchall()
        return [(bytes(row[0]), int(row[1])) for row in rows[:limit]], len(rows) > limit

    def audit(
        self, customer: str, fragment_id: bytes, nonce: bytes, offset: int, length: int
    ) -> bytes:
        """SHA-256(nonce || the fragment's bytes [offset, offset + length)): proof that this
        supplier still holds them, new for every nonce."""
        with self.open_fragment(customer, fragment_id) as reader:
            if offset < 0 or length < 1 or offset + length > reader.size:
                raise BadFragment(
                    f"the audit range [{offset}, {offset + length}) is outside the fragment "
                    f"({reader.size} bytes)"
                )
            return reader.digest_range(nonce, offset, length)


class PendingFragment:
    """One fragment being received: ``write`` its bytes in order, then ``commit`` it. Any
    refusal (longer or shorter than announced, another SHA-256, a disk error) drops it."""

    def __init__(
        self,
        store: FragmentStore,
        customer: str,
        fragment_id: bytes,
        size: int,
        sha256: bytes,
        path: Path,
        temporary: Path,
        fd: int,
    ) -> None:
        self.store = store
        self.customer = customer
        self.fragment_id = fragment_id
        self.size = size
        self.sha256 = sha256
        self.path = path
        self.temporary = temporary
        self.received = 0
        self._fd: int | None = fd
        self._hash = hashlib.sha256()
        self._done = False
        # a write in a worker thread may still run when a cancelled caller aborts
        self._lock = threading.RLock()

    def __enter__(self) -> PendingFragment:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    def write(self, data: bytes | bytearray) -> None:
        with self._lock:
            self._write(data)

    def _write(self, data: bytes | bytearray) -> None:
        if self._done or self._fd is None:
            raise BadFragment("the fragment was already committed or dropped")
        if self.received + len(data) > self.size:
            self.abort()
            raise BadFragment(f"the fragment is longer than the {self.size} bytes announced")
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.abort()
            raise disk_error(exc) from None
        self.received += len(data)

    def commit(self) -> None:
        """Check, fsync, rename into place and record; the fragment is kept once it returns."""
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        if self._done or self._fd is None:
            raise BadFragment("the fragment was already committed or dropped")
        try:
            if self.received != self.size:
                raise BadFragment(
                    f"the fragment ended after {self.received} of the {self.size} bytes announced"
                )
            if self._hash.digest() != self.sha256:
                raise BadFragment("the fragment's SHA-256 is not the one announced")
            try:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                self.store._keep(self)
            except OSError as exc:
                raise disk_error(exc) from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.store._unreserve(self.customer, self.fragment_id, self.size)

    def abort(self) -> None:
        """Drop the fragment (nothing is left of it); nothing happens once it was committed."""
        with self._lock:
            if self._done:
                return
            self._done = True
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            with contextlib.suppress(OSError):
                self.temporary.unlink()
            self.store._unreserve(self.customer, self.fragment_id, self.size)


class FragmentReader:
    """A stored fragment read in chunks; the last ``read`` checks size and SHA-256 against the
    ledger and raises FragmentCorrupt when they differ."""

    def __init__(self, handle: BinaryIO, size: int, sha256: bytes) -> None:
        self.handle = handle
        self.size = size
        self.sha256 = sha256
        self._read = 0
        self._hash = hashlib.sha256()

    def __enter__(self) -> FragmentReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.handle.close()

    def read(self) -> bytes:
        """The next chunk; ``b""`` at the end, once the fragment proved intact."""
        try:
            chunk = self.handle.read(min(READ_CHUNK, self.size - self._read + 1))
        except OSError as exc:
            raise FragmentCorrupt(f"the fragment cannot be read: {exc.strerror or exc}") from None
        self._read += len(chunk)
        self._hash.update(chunk)
        if self._read > self.size or (not chunk and self._read < self.size):
            raise FragmentCorrupt("the fragment's size on this supplier's disk changed")
        if not chunk and self._hash.digest() != self.sha256:
            raise FragmentCorrupt("the fragment is corrupt on this supplier's disk")
        return chunk

    def digest_range(self, nonce: bytes, offset: int, length: int) -> bytes:
        """SHA-256(nonce || bytes [offset, offset + length)) of the file as it is now."""
        digest = hashlib.sha256(nonce)
        try:
            self.handle.seek(offset)
            left = length
            while left:
                chunk = self.handle.read(min(READ_CHUNK, left))
                if not chunk:
                    raise FragmentCorrupt("the fragment's size on this supplier's disk changed")
                digest.update(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise FragmentCorrupt(f"the fragment cannot be read: {exc.strerror or exc}") from None
        return digest.digest()


def _log_rmtree(function: Any, path: str, exc_info: Any) -> None:
    log.warning("supplier: cannot remove %s: %s", path, exc_info[1])
