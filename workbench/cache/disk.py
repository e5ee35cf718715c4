"""The disk tier: SQLite (WAL) holding zstd-compressed JSON entries. Survives a kernel restart; no pickle.

Two processes may read and write one file at once: WAL lets readers run beside a writer, ``busy_timeout``
makes a writer wait for the other's lock instead of failing, and each store is one ``BEGIN IMMEDIATE``
transaction. The total size lives in a one-row table kept exact by triggers, so the size bound is checked
without scanning, and it stays right whichever process wrote. Over ``max_bytes``, the entries used least
recently (``last_access``) are deleted until the total fits.

A failing disk never costs an answer. Every SQLite error (disk full, corrupt page, read-only file system,
lock held too long) makes a lookup a miss and a store a skipped store, counted (``errors``, ``skipped``)
and warned once per kind (`CacheTierWarning`); the real error is kept (``health.last_error``): a failed
transaction is rolled back only when SQLite still has one open, so no "cannot rollback" masks it.

Lookups never write. A hit's ``last_access`` is kept in memory and written with the next store (before its
evictions are chosen, so this process's LRU order is exact) or at ``close()``; other processes see this
process's hits from then on. Rows found expired on lookup are deleted by the next store too. So a
read-only file (a read-only mount, a file opened by a user without write access) still serves hits: it is
opened read-only (``mode=ro``, or ``immutable=1`` when the WAL side files cannot be made) and stores are
skipped.

Entries carry their cache's ``namespace``: ``clear()`` deletes one namespace (``all_namespaces=True``:
every one); the size bound and ``nbytes`` are for the whole file. `repair()` rebuilds a corrupt file from
the rows that can still be read (see there).

Expiry uses the wall clock (``time.time()``): it must mean the same in another process or after a restart.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from workbench._exceptions import CacheError
from workbench.cache._salvage import salvage
from workbench.cache.counters import Counters, TierHealth, failure_kind
from workbench.cache.entry import CacheEntry

__all__ = ["DiskTier", "RepairReport"]

_T = TypeVar("_T")

_TABLES = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    expires REAL NOT NULL,
    last_access REAL NOT NULL,
    ns TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0), total INTEGER NOT NULL);
"""
_REST = """
CREATE INDEX IF NOT EXISTS entries_last_access ON entries(last_access);
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires);
CREATE INDEX IF NOT EXISTS entries_ns ON entries(ns);
INSERT OR IGNORE INTO meta (id, total) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries
    BEGIN UPDATE meta SET total = total + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries
    BEGIN UPDATE meta SET total = total - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF size ON entries
    BEGIN UPDATE meta SET total = total - OLD.size + NEW.size WHERE id = 0; END;
"""
_NAMES = frozenset(
    {
        "entries",
        "meta",
        "entries_last_access",
        "entries_expires",
        "entries_ns",
        "entries_ins",
        "entries_del",
        "entries_upd",
    }
)

_SWEEP_BATCH = 64
_TOUCH_CAP = 10_000  # pending last_access updates kept in memory (~1 MB); the oldest is dropped beyond it
_NEVER = 1e300  # "no expiry", still an ordinary REAL

_ADVICE = {
    "SQLITE_FULL": "the disk is full: lookups still run, stores are skipped until space is freed",
    "SQLITE_CORRUPT": "the file is damaged: call repair() (ResponseCache.repair()) to rebuild it from the "
    "readable rows",
    "SQLITE_NOTADB": "the file is not a SQLite database (damaged or overwritten): call repair() to start "
    "it afresh",
    "SQLITE_READONLY": "the file is read-only: lookups still run, stores are skipped",
    "SQLITE_BUSY": "another process held the lock longer than busy_timeout_ms: this store is skipped",
    "SQLITE_LOCKED": "the database is locked: this operation is skipped",
    "SQLITE_CANTOPEN": "the file cannot be opened: check the path and its permissions",
    "SQLITE_IOERR": "the disk reported an I/O error: check the device",
}


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What `DiskTier.repair()` did: rows kept, rows lost (unreadable or undecodable), seconds taken."""

    kept: int
    unreadable: int
    invalid: int
    seconds: float
    was_corrupt: bool


class DiskTier:
    """A size-bounded, TTL'd entry store in one SQLite file. Thread-safe (one connection behind a lock)."""

    name = "disk"

    def __init__(
        self,
        path: str | Path,
        *,
        namespace: str = "default",
        max_bytes: int = 512 * 1024 * 1024,
        ttl_s: float | None = 7 * 24 * 3600.0,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = Path(path).expanduser()
        self.namespace = namespace
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.busy_timeout_ms = busy_timeout_ms
        self.counters = Counters()
        self.health = TierHealth(f"disk ({self.path})", self.counters)
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}  # key -> last hit time, written by the next store or close()
        self._expired: set[str] = set()  # keys seen expired by lookups, deleted by the next store
        self.readonly = False
        self._db: sqlite3.Connection | None = None
        self._db, self.readonly = self._open()

    # ---- opening ----

    def _connect(self, mode: Literal["rw", "ro", "immutable"]) -> sqlite3.Connection:
        if mode == "rw":
            target, uri = str(self.path), False
        else:
            q = "mode=ro" if mode == "ro" else "mode=ro&immutable=1"
            target, uri = f"file:{urllib.parse.quote(str(self.path))}?{q}", True
        # isolation_level=None: we issue BEGIN ourselves, so each store is exactly one transaction.
        db = sqlite3.connect(
            target,
            uri=uri,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        """Schema and WAL mode, writing only what is missing: an existing file is opened without a write,
        so a full disk or a read-only file still opens."""
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        if "entries" in names and "ns" not in {r[1] for r in db.execute("PRAGMA table_info(entries)")}:
            # files written before namespaces: their rows belong to no namespace ('')
            db.execute("ALTER TABLE entries ADD COLUMN ns TEXT NOT NULL DEFAULT ''")
        if not _NAMES <= names or db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] != 1:
            db.executescript(_TABLES + _REST)

    def _open(self) -> tuple[sqlite3.Connection | None, bool]:
        """(connection, read-only). A file that cannot be opened for writing is opened read-only; one that
        cannot be read at all leaves the tier off (every lookup a miss, every store skipped), warned."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only parent of an existing file is fine; a missing file fails just below
        db: sqlite3.Connection | None = None
        try:
            db = self._connect("rw")
            self._setup(db)
            return db, False
        except sqlite3.Error as exc:
            first = exc
            if db is not None:
                db.close()
        if failure_kind(first) not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            modes: tuple[Literal["ro", "immutable"], ...] = ("ro", "immutable")
            for mode in modes:
                try:
                    ro = self._connect(mode)
                except sqlite3.Error:
                    continue
                try:
                    ro.execute("SELECT COUNT(*) FROM meta").fetchone()
                    ro.execute("SELECT key FROM entries LIMIT 1").fetchall()
                except sqlite3.Error:
                    ro.close()
                    continue
                self.health.failed(
                    "open for writing", first, advice="opened read-only: lookups are served, stores skipped"
                )
                return ro, True
        self.health.failed("open", first, advice=self._advice(first) + "; the disk tier is off")
        return None, True

    @staticmethod
    def _advice(exc: BaseException) -> str:
        return _ADVICE.get(failure_kind(exc), "this operation is skipped")

    def _failed(self, op: str, exc: BaseException, *, store: bool = False) -> None:
        if failure_kind(exc) == "SQLITE_READONLY":
            self.readonly = True  # stop attempting writes; reopening the tier checks again
        self.health.failed(op, exc, advice=self._advice(exc), store=store)

    def _write(self, db: sqlite3.Connection, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """One ``BEGIN IMMEDIATE`` transaction. On failure it is rolled back only if SQLite still has it
        open (a full disk may already have rolled it back), so the error raised is the real one."""
        db.execute("BEGIN IMMEDIATE")
        try:
            out = body(db)
            db.execute("COMMIT")
            return out
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the error that made us roll back is the one worth reporting
            raise

    # ---- lookups ----

    def _read(self, key: str) -> tuple[bytes, float] | None:
        db = self._db
        if db is None:
            return None
        with self._lock:
            row = db.execute("SELECT value, expires FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else (bytes(row[0]), float(row[1]))

    def get(self, key: str) -> CacheEntry | None:
        now = time.time()
        try:
            row = self._read(key)
        except sqlite3.Error as exc:
            self._failed("lookup", exc)
            self.counters.incr("misses")
            return None
        if row is not None and row[1] <= now:
            if not self.readonly:
                with self._lock:
                    new = key not in self._expired
                    self._expired.add(key)
                if new:
                    self.counters.incr("expirations")
            row = None
        if row is None:
            self.counters.incr("misses")
            return None
        try:
            entry = CacheEntry.from_bytes(row[0])
        except CacheError as exc:
            self.health.failed("decode", exc, advice="the entry is dropped and the lookup is a miss")
            self.counters.incr("misses")
            self.remove(key)  # rare (a damaged row): worth a write now, and a failure here is only counted
            return None
        if not self.readonly:
            with self._lock:
                self._touched.pop(key, None)
                self._touched[key] = now
                if len(self._touched) > _TOUCH_CAP:
                    del self._touched[next(iter(self._touched))]
        self.counters.incr("hits")
        return entry

    def peek(self, key: str) -> CacheEntry | None:
        try:
            row = self._read(key)
        except sqlite3.Error as exc:
            self._failed("lookup", exc)
            return None
        if row is None or row[1] <= time.time():
            return None
        try:
            return CacheEntry.from_bytes(row[0])
        except CacheError:
            return None

    # ---- stores ----

    def _pending(self, db: sqlite3.Connection, now: float) -> None:
        """Write the hits' last_access and delete the rows lookups found expired or undecodable (caller
        holds the lock and a transaction)."""
        if self._touched:
            db.executemany(
                "UPDATE entries SET last_access = ? WHERE key = ?", [(t, k) for k, t in self._touched.items()]
            )
        if self._expired:
            # still expired: another process may have stored a fresh answer under the key since
            db.executemany(
                "DELETE FROM entries WHERE key = ? AND expires <= ?", [(k, now) for k in self._expired]
            )

    def _clear_pending(self) -> None:
        self._touched.clear()
        self._expired.clear()

    def put(self, entry: CacheEntry) -> bool:
        if self._db is None or self.readonly:
            self.counters.incr("skipped")
            return False
        blob = entry.to_bytes()
        size = len(blob)
        if size > self.max_bytes:
            self.counters.incr("rejected")
            return False
        now = time.time()
        expires = _NEVER if self.ttl_s is None else now + self.ttl_s

        def body(db: sqlite3.Connection) -> tuple[int, int]:
            self._pending(db, now)
            db.execute(
                # An upsert, not INSERT OR REPLACE: REPLACE's implicit delete skips the size triggers.
                "INSERT INTO entries (key, value, size, expires, last_access, ns) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, size = excluded.size, "
                "expires = excluded.expires, last_access = excluded.last_access, ns = excluded.ns",
                (entry.key, blob, size, expires, now, self.namespace),
            )
            expired = db.execute(
                "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries WHERE expires <= ? LIMIT ?)",
                (now, _SWEEP_BATCH),
            ).rowcount
            evicted = 0
            (total,) = db.execute("SELECT total FROM meta WHERE id = 0").fetchone()
            while total > self.max_bytes:
                # Least recently accessed first, just enough of them to fit (read in pages of 64 rows).
                victims: list[tuple[str]] = []
                for key, vsize in db.execute(
                    "SELECT key, size FROM entries WHERE key != ? ORDER BY last_access LIMIT 64",
                    (entry.key,),
                ):
                    victims.append((key,))
                    total -= vsize
                    if total <= self.max_bytes:
                        break
                if not victims:
                    break
                db.executemany("DELETE FROM entries WHERE key = ?", victims)
                evicted += len(victims)
                (total,) = db.execute("SELECT total FROM meta WHERE id = 0").fetchone()
            return expired, evicted

        db = self._db
        try:
            with self._lock:
                expired, evicted = self._write(db, body)
                self._clear_pending()
        except sqlite3.Error as exc:
            self._failed("store", exc, store=True)
            return False
        self.counters.incr("stores")
        if expired:
            self.counters.incr("expirations", expired)
        if evicted:
            self.counters.incr("evictions", evicted)
        return True

    def remove(self, key: str) -> bool:
        db = self._db
        if db is None or self.readonly:
            return False
        try:
            with self._lock:
                n: int = self._write(
                    db, lambda d: d.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount
                )
        except sqlite3.Error as exc:
            self._failed("remove", exc)
            return False
        return n > 0

    def clear(self, *, all_namespaces: bool = False) -> None:
        """Delete this namespace's entries (``all_namespaces=True``: every entry in the file).

        Raises `CacheError` when the file cannot be written: a clear that silently did nothing could leave
        answers the caller meant to withdraw."""
        db = self._db
        if db is None:
            raise CacheError(
                f"cannot clear the disk cache at {self.path}: it is not open ({self.health.last_error})",
                hint="call repair(), or delete the file",
            )
        try:
            with self._lock:
                if all_namespaces:
                    self._write(db, lambda d: d.execute("DELETE FROM entries"))
                else:
                    self._write(
                        db, lambda d: d.execute("DELETE FROM entries WHERE ns = ?", (self.namespace,))
                    )
                self._clear_pending()
        except sqlite3.Error as exc:
            self._failed("clear", exc)
            raise CacheError(
                f"cannot clear the disk cache at {self.path}: {failure_kind(exc)}: {exc}",
                hint=self._advice(exc),
            ) from exc

    # ---- gauges (never raise: a damaged file is reported through errors and health.last_error) ----

    def _count(self) -> int | None:
        return self._gauge("count", "SELECT COUNT(*) FROM entries WHERE ns = ?", self.namespace)

    def _total(self) -> int | None:
        return self._gauge("size", "SELECT total FROM meta WHERE id = 0")

    def _gauge(self, what: str, sql: str, *params: object) -> int | None:
        """One number from the file, or None (the failure recorded under `what`) when it cannot be read."""
        db = self._db
        if db is None:
            return None
        try:
            with self._lock:
                (value,) = db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            self._failed(what, exc)
            return None
        return int(value)

    def __len__(self) -> int:
        """Entries of this namespace (0 when the file cannot be read; see `gauges`)."""
        return self._count() or 0

    @property
    def nbytes(self) -> int:
        """Stored (compressed) bytes of all entries in the file, whichever process or namespace wrote them."""
        return self._total() or 0

    def gauges(self) -> tuple[int | None, int | None]:
        """(entries, bytes), None for what cannot be read right now."""
        return self._count(), self._total()

    # ---- repair ----

    def repair(self) -> RepairReport:
        """Rebuild the file from every row that can still be read, and reopen it read-write.

        Why row by row and not ``VACUUM INTO``: VACUUM stops at the first unreadable page, so one bad page
        would lose every entry; SQLite's ``.recover`` lives in the command-line shell and its recovery
        extension, which Python's ``sqlite3`` does not ship. Here candidate rowids are collected from the
        table's own b-tree (skipping ahead past damaged pages) and from each index's b-tree (separate pages,
        usually intact where the table is not), then each row is read on its own: a damaged page loses only
        the rows on it. Rows whose value does not decode to an entry of the same key are dropped too. The
        new file is written beside the old one and moved over it (after the old WAL side files are removed,
        so they cannot be replayed onto it). Run it while no other process has the file open.
        """
        t0 = time.perf_counter()
        with self._lock:
            was_corrupt = self._db is None
            src = self._db
            if src is None:
                try:
                    src = self._connect("rw")
                except sqlite3.Error:
                    src = None
            rows: list[tuple[Any, ...]] = []
            unreadable = invalid = 0
            if src is not None:
                try:
                    ok = src.execute("PRAGMA quick_check").fetchone()
                    was_corrupt = was_corrupt or ok is None or ok[0] != "ok"
                except sqlite3.Error:
                    was_corrupt = True
                rows, unreadable, invalid = salvage(src)
                src.close()
            self._db = None
            self._clear_pending()
            tmp = self.path.with_name(self.path.name + f".repair-{os.getpid()}")
            try:
                tmp.unlink(missing_ok=True)
                new = sqlite3.connect(str(tmp), isolation_level=None)
                try:
                    new.execute("PRAGMA journal_mode = WAL")
                    new.executescript(_TABLES + _REST)
                    self._write(
                        new,
                        lambda d: d.executemany(
                            "INSERT OR IGNORE INTO entries (key, value, size, expires, last_access, ns) "
                            "VALUES (?,?,?,?,?,?)",
                            rows,
                        ),
                    )
                finally:
                    new.close()  # the last connection checkpoints and removes its WAL
                for side in ("-wal", "-shm", "-journal"):
                    Path(str(self.path) + side).unlink(missing_ok=True)
                os.replace(tmp, self.path)
            except (sqlite3.Error, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise CacheError(
                    f"cannot rebuild the disk cache at {self.path}: {type(exc).__name__}: {exc}",
                    hint="free disk space or make the folder writable, then call repair() again",
                ) from exc
            self.readonly = False
        db, ro = self._open()
        with self._lock:
            self._db, self.readonly = db, ro
        return RepairReport(len(rows), unreadable, invalid, time.perf_counter() - t0, was_corrupt)

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            if not self.readonly and (self._touched or self._expired):
                try:
                    self._write(db, lambda d: self._pending(d, time.time()))
                except sqlite3.Error as exc:
                    self.health.failed("close", exc, advice="recent hits' access times were not saved")
            self._clear_pending()
            db.close()
