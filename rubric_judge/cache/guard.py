"""What the three caches under the cache folder share: surviving corruption, read-only use and
folders that cannot be written.

The cache folder holds `verdicts/` (judge answers, diskcache), `metrics/` (metric values,
diskcache) and `thumbnails/` (report thumbnails, plain files). All three are caches: losing one
costs money or time, never a result. So, for each of them:

* Corrupted (a truncated, garbled or overwritten SQLite file; a file where the store's folder
  should be), found on open or by any read or write that fails mid-run: the store is set aside
  under `<name>.corrupt-<local time>` with a warning naming both folders, and started again
  empty. The run goes on and pays again for what it held.
* Read-only (`--cache read-only`, `cache stats`): nothing is opened for writing and nothing is
  created. SQLite is read through a `mode=ro` URI connection (diskcache.Cache always opens
  read-write and creates its tables), a missing folder is an empty cache, and a corrupted store
  is left exactly as it is and used as empty.
* Unwritable (a read-only mount, someone else's folder): a read-write run warns once and goes on
  reading what is there and storing nothing; `cache clear|prune` refuse (`require_writable`).

`GuardedFolder` holds that policy; `DiskStore` (verdicts, metric values) and the report's
thumbnail store build on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError

SET_ASIDE_MARK = ".corrupt-"
DISKCACHE_DB = "cache.db"  # diskcache.core.DBNAME; with its WAL journal and shared-memory index beside it
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26  # primary result codes: the file itself is damaged
_MAX_RECOVERIES = 3  # a store that keeps breaking after being rebuilt is given up for the run
# What unpickling a garbled value may raise: that one entry is unreadable, the store may be fine.
_UNDECODABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError)


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite's "this file is damaged" errors (malformed image, not a database); False
    for a locked, full or read-only database, which say nothing about the file's contents."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def describe(exc: BaseException) -> str:
    """A short reason for a warning: the OS's or SQLite's own words, without a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def unwritable_reason(folder: Path, files: tuple[str, ...] = ()) -> str | None:
    """Why nothing can be written in `folder` (or where it would be created); None when it can.

    Asks the kernel (os.access), so a read-only mount says no even to root, while plain
    permission bits do not stop root, and need not: root can write there. `files` are the
    store's own files in the folder, which must be writable too.
    """
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return f"{folder} cannot be created"
    directory = existing if existing.is_dir() else existing.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return _denied(directory)
    if existing == folder and folder.is_dir():
        for name in files:
            path = folder / name
            if path.exists() and not os.access(path, os.W_OK):
                return _denied(path)
    return None


def _denied(path: Path) -> str:
    try:
        read_only_mount = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    return f"{path} is on a read-only file system" if read_only_mount else f"{path} is not writable (permission denied)"


def require_writable(folder: Path, files: tuple[str, ...] = ()) -> None:
    """Raise UserError (exit 2) naming `folder` when it cannot be written: for commands whose
    whole point is to change the cache (`cache clear`, `cache prune`)."""
    reason = unwritable_reason(folder, files)
    if reason is not None:
        raise UserError(Problem(Location(Path(folder)), f"the cache folder is not writable ({reason}), so nothing was changed",
                                fix="run as a user who may write there, or remount it read-write"))


def set_aside(path: Path) -> Path:
    """Rename `path` to `<name>.corrupt-<YYYYmmddTHHMMSS>` beside it (a counter is added when that
    name is taken) and return the new path; raises OSError when it cannot be renamed."""
    path = Path(path)
    stem = f"{path.name}{SET_ASIDE_MARK}{time.strftime('%Y%m%dT%H%M%S')}"
    target, number = path.with_name(stem), 1
    while target.exists() or target.is_symlink():
        number += 1
        target = path.with_name(f"{stem}-{number}")
    os.rename(path, target)
    return target


def set_aside_folders(root: Path) -> list[Path]:
    """Stores set aside after corruption under the cache folder `root` (two levels deep, where
    the thumbnail store lives), oldest name first."""
    root = Path(root)
    found = [*root.glob(f"*{SET_ASIDE_MARK}*"), *root.glob(f"*/*{SET_ASIDE_MARK}*")]
    return sorted(found, key=lambda p: p.name)


def folder_bytes(path: Path) -> int:
    """Total size of the files under `path` (0 when it does not exist); reads nothing but metadata."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):  # removed while we walked
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def warn(path: Path, message: str, fix: str = "") -> None:
    """A warning about a cache folder (errors.warn: the CLI prints it, a library caller's logging shows it)."""
    from rubric_judge.errors import warn as warn_problem

    warn_problem(Problem(Location(Path(path)), message, fix=fix))


@functools.cache
def store_errors() -> tuple[type[BaseException], ...]:
    """What a failing store operation raises: SQLite, the file system, diskcache's lock timeout."""
    import diskcache

    return (sqlite3.Error, OSError, diskcache.Timeout)


class GuardedFolder:
    """One cache store's folder `root/name` and the policy for what can go wrong with it.

    Subclasses open the store in `_open` (called under `_lock`) and report failures to
    `_corrupted` / `_stop_writing`; warnings are printed once per kind per store.

    Attributes:
        folder: the store's folder.
        label: what the store is called in warnings ("verdict cache").
        writable: whether it is being written; False in read-only mode and once writing failed.
        corruption: why the store was found corrupted (None when it was not).
        set_aside_as: where the corrupted store was moved to (None when it was not).
    """

    def __init__(self, root: Path, name: str, label: str, read_only: bool, files: tuple[str, ...] = ()):
        self.root = Path(root)
        self.folder = self.root / name
        self.label = label
        self.read_only = read_only
        self.writable = not read_only
        self.corruption: str | None = None
        self.set_aside_as: Path | None = None
        self._files = files
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._recoveries = 0
        self._identity: tuple[int, int] | None = None

    # -- the policy --------------------------------------------------------------------------

    def _check_writable(self) -> None:
        """Before opening for writing: an unwritable folder makes this a read-only store, with a warning."""
        if self.writable:
            reason = unwritable_reason(self.folder, self._files)
            if reason is not None:
                self._stop_writing(reason)

    def _check_shape(self) -> bool:
        """A file where the store's folder (or a folder above it, up to the cache root) belongs is
        a corrupted store. Returns False when the store cannot be used (read-only, or not movable)."""
        relative = self.folder.relative_to(self.root)
        for depth in range(1, len(relative.parts) + 1):
            path = self.root.joinpath(*relative.parts[:depth])
            if path.exists() and not path.is_dir():
                return self._corrupted(f"{path} is a file, not a folder", path)
        return True

    def _corrupted(self, reason: str, path: Path | None = None) -> bool:
        """Deal with a corrupted store. Returns True when it was set aside (or replaced meanwhile by
        another process) so the caller should open an empty one; False when the store is to be
        used as empty for the rest of the run, untouched."""
        self.corruption = reason
        path = path or self.folder
        if not self.writable:
            self._warn_once("corrupt", f"the {self.label} is corrupted ({reason}); it is left as it is and nothing is read from it",
                            "a read-write run, or `rubric-judge cache clear`, sets it aside and starts an empty one")
            return False
        self._recoveries += 1
        if self._recoveries > _MAX_RECOVERIES:
            self._warn_once("gave-up", f"the {self.label} keeps failing ({reason}) even after being rebuilt; this run goes on without it")
            self.writable = False
            return False
        if path == self.folder and self._identity is not None and self._identity != _identity(self.folder):
            return True  # another process set it aside already and started a new one: use that
        self._release()  # nothing of ours may still write into the store once it is set aside
        try:
            moved = set_aside(path)
        except OSError as exc:
            self._stop_writing(f"it is corrupted ({reason}) and cannot be set aside: {describe(exc)}")
            return False
        self.set_aside_as = moved
        warn(self.folder, f"the {self.label} is corrupted ({reason}); set it aside as {moved} and started an empty one: "
                          "what it held is computed (and paid for) again",
             f"delete {moved} once you no longer need it")
        return True

    def _stop_writing(self, reason: str) -> None:
        """Writing failed or cannot work: warn once, keep reading what is there, store nothing more."""
        if not self.read_only:  # read-only by request: nothing to warn about
            self._warn_once("unwritable", f"cannot write the {self.label} ({reason}); this run reads what is there and stores nothing new",
                            "make the folder writable, choose another with --cache-dir, or pass --cache read-only")
        self.writable = False

    def _unreadable_entry(self, exc: BaseException) -> None:
        self._warn_once("entry", f"an entry of the {self.label} cannot be decoded ({type(exc).__name__}); it counts as missing")

    def _unreadable(self, exc: BaseException) -> None:
        self._warn_once("read", f"cannot read the {self.label} ({describe(exc)}); what it holds counts as missing")

    def _warn_once(self, kind: str, message: str, fix: str = "") -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        warn(self.folder, message, fix)

    def _release(self) -> None:
        """Close whatever the subclass holds open in the folder (called before setting it aside)."""

    def _remember_identity(self) -> None:
        self._identity = _identity(self.folder)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class DiskStore(GuardedFolder):
    """A diskcache store (str key -> picklable value) at `root/name` that survives corruption
    and, when `read_only`, never writes: every method turns a store failure into a miss (reads)
    or a no-op (writes) after the policy of `GuardedFolder` has dealt with it.

    Args:
        root: the cache folder.
        name: the store's folder inside it ("verdicts", "metrics").
        label: what warnings call it.
        read_only: read through a read-only SQLite connection; create and write nothing.
        settings: diskcache.Cache settings (size_limit, eviction_policy, ...).
    """

    def __init__(self, root: Path, name: str, label: str, read_only: bool = False, **settings: Any):
        super().__init__(root, name, label, read_only, files=(DISKCACHE_DB, f"{DISKCACHE_DB}-wal", f"{DISKCACHE_DB}-shm"))
        self._settings = settings
        self._cache: Any = None  # diskcache.Cache when writable
        self._reader: _ReadOnlyDiskcache | None = None
        with self._lock:
            self._check_writable()
            self._open()

    def _open(self) -> None:
        self._close_handles()
        if not self._check_shape():
            return
        if self.writable:
            import diskcache

            try:
                self._cache = diskcache.Cache(str(self.folder), **self._settings)
            except store_errors() as exc:
                if is_corruption(exc):
                    if self._corrupted(describe(exc)):
                        self._open()
                    return
                self._stop_writing(describe(exc))
            else:
                self._remember_identity()
                return
        try:
            self._reader = _ReadOnlyDiskcache.open(self.folder)
        except store_errors() as exc:
            self._failed(exc, writing=False)

    def _failed(self, exc: BaseException, writing: bool) -> bool:
        """Deal with a failed operation; True when the store was rebuilt and a write may be retried."""
        if is_corruption(exc):
            if self._corrupted(describe(exc)):
                self._open()
                return self._cache is not None
            self._close_handles()  # used as empty from now on
            return False
        if writing:
            self._stop_writing(describe(exc))
        else:
            self._unreadable(exc)
        return False

    def get(self, key: str) -> Any | None:
        """The value stored under `key`, or None (missing, undecodable, or the store failed)."""
        with self._lock:
            try:
                if self._cache is not None:
                    return self._cache.get(key)
                if self._reader is not None:
                    return self._reader.get(key)
            except store_errors() as exc:
                self._failed(exc, writing=False)
            except _UNDECODABLE as exc:
                self._unreadable_entry(exc)
            return None

    def set(self, key: str, value: Any) -> bool:
        """Store `value` under `key`; False when nothing was stored (read-only, or writing failed)."""
        return bool(self._write(lambda cache: cache.set(key, value) or True))

    def delete(self, key: str) -> bool:
        """Remove `key`; True when it was there and is gone."""
        return bool(self._write(lambda cache: cache.delete(key)))

    def clear(self) -> int:
        """Remove every entry; returns how many were removed (0 when the store was rebuilt empty)."""
        return int(self._write(lambda cache: cache.clear()) or 0)

    def _write(self, operation: Any) -> Any:
        with self._lock:
            for _ in range(2):  # once more on the rebuilt store after corruption
                if self._cache is None or not self.writable:
                    return None
                try:
                    return operation(self._cache)
                except store_errors() as exc:
                    if not self._failed(exc, writing=True):
                        return None
            return None

    def keys(self) -> list[Any]:
        """Every key (an empty list when the store is missing or failed)."""
        with self._lock:
            try:
                if self._cache is not None:
                    return list(self._cache.iterkeys())
                if self._reader is not None:
                    return self._reader.keys()
            except store_errors() as exc:
                self._failed(exc, writing=False)
            except _UNDECODABLE as exc:
                self._unreadable_entry(exc)
            return []

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) for every readable entry."""
        for key in self.keys():
            value = self.get(key)
            if value is not None:
                yield key, value

    def close(self) -> None:
        with self._lock:
            self._close_handles()

    def _release(self) -> None:
        self._close_handles()

    def _close_handles(self) -> None:
        for handle in (self._cache, self._reader):
            if handle is not None:
                try:
                    handle.close()
                except store_errors():
                    pass  # closing a broken store: nothing left to save
        self._cache = self._reader = None


class _ReadOnlyDiskcache:
    """diskcache's Cache table read through a read-only SQLite connection, values decoded by
    diskcache's own Disk (which also reads values kept in files): never a write, never a new file."""

    def __init__(self, connection: sqlite3.Connection, folder: Path):
        import diskcache

        self._con = connection
        self._disk = diskcache.Disk(str(folder))

    @classmethod
    def open(cls, folder: Path) -> _ReadOnlyDiskcache | None:
        """None when there is no store (an empty cache); raises sqlite3 errors as they come."""
        db = Path(folder) / DISKCACHE_DB
        if not db.is_file():
            return None
        uri = db.resolve().as_uri()
        # In WAL mode a plain mode=ro connection creates cache.db-wal and -shm beside the file.
        # `immutable` reads the file alone and creates nothing: right when no journal is there.
        # When one is (a writer is running, or one was killed), it may hold committed entries, so
        # read through it as any reader does, and fall back to the file alone if that is refused.
        if Path(f"{db}-wal").exists():
            try:
                return cls(_validated(sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)), folder)
            except sqlite3.Error as exc:
                if is_corruption(exc):
                    raise
        return cls(_validated(sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)), folder)

    def get(self, key: Any) -> Any | None:
        db_key, raw = self._disk.put(key)  # only converts the key; writes nothing
        rows = self._con.execute(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, time.time())).fetchall()
        if not rows:
            return None
        mode, filename, value = rows[0]
        try:
            return self._disk.fetch(mode, filename, value, False)
        except FileNotFoundError:
            return None  # its value file was removed: a miss, as diskcache itself treats it

    def keys(self) -> list[Any]:
        return [self._disk.get(key, raw) for key, raw in self._con.execute("SELECT key, raw FROM Cache ORDER BY rowid")]

    def close(self) -> None:
        self._con.close()


def _validated(connection: sqlite3.Connection) -> sqlite3.Connection:
    """The connection, after a first read of the tables diskcache keeps (damage shows here first)."""
    try:
        connection.execute("SELECT key, value FROM Settings").fetchall()
        connection.execute("SELECT count(*) FROM Cache WHERE rowid < 0").fetchall()
    except BaseException:
        connection.close()
        raise
    return connection
