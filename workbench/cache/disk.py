"""The disk tier: SQLite (WAL) holding zstd-compressed JSON entries. Survives a kernel restart; no pickle.

Two processes may read and write one file at once: WAL lets readers run beside a writer, ``busy_timeout``
makes a writer wait for the other's lock instead of failing, and each store is one ``BEGIN IMMEDIATE``
transaction. The total size lives in a one-row table kept exact by triggers, so the size bound is checked
without scanning, and it stays right whichever process wrote. Over ``max_bytes``, the entries used least
recently (``last_access``, updated on every hit) are deleted until the total fits.

Expiry uses the wall clock (``time.time()``): it must mean the same in another process or after a restart.
Expired rows are deleted lazily on read and in small batches on each store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from workbench._exceptions import CacheError
from workbench.cache.entry import CacheEntry
from workbench.cache.stats import Counters

__all__ = ["DiskTier"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    expires REAL NOT NULL,
    last_access REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_last_access ON entries(last_access);
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires);
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0), total INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (id, total) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries
    BEGIN UPDATE meta SET total = total + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries
    BEGIN UPDATE meta SET total = total - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF size ON entries
    BEGIN UPDATE meta SET total = total - OLD.size + NEW.size WHERE id = 0; END;
"""

_SWEEP_BATCH = 64
_NEVER = 1e300  # "no expiry", still an ordinary REAL


class DiskTier:
    """A size-bounded, TTL'd entry store in one SQLite file. Thread-safe (one connection behind a lock)."""

    name = "disk"

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 512 * 1024 * 1024,
        ttl_s: float | None = 7 * 24 * 3600.0,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.counters = Counters()
        self._lock = threading.Lock()
        try:
            # isolation_level=None: we issue BEGIN ourselves, so each store is exactly one transaction.
            self._db = sqlite3.connect(
                str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise CacheError(
                f"cannot open the disk cache at {self.path}: {exc}",
                hint="check the path is writable, or turn disk_cache off",
            ) from exc

    def get(self, key: str) -> CacheEntry | None:
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT value, expires FROM entries WHERE key = ?", (key,)).fetchone()
            if row is not None and row[1] <= now:
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                self.counters.incr("expirations")
                row = None
            if row is not None:
                self._db.execute("UPDATE entries SET last_access = ? WHERE key = ?", (now, key))
        if row is None:
            self.counters.incr("misses")
            return None
        try:
            entry = CacheEntry.from_bytes(bytes(row[0]))
        except CacheError:
            self.counters.incr("errors")
            self.counters.incr("misses")
            self.remove(key)
            return None
        self.counters.incr("hits")
        return entry

    def peek(self, key: str) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        if row is None:
            return None
        try:
            return CacheEntry.from_bytes(bytes(row[0]))
        except CacheError:
            return None

    def put(self, entry: CacheEntry) -> bool:
        blob = entry.to_bytes()
        size = len(blob)
        if size > self.max_bytes:
            self.counters.incr("rejected")
            return False
        now = time.time()
        expires = _NEVER if self.ttl_s is None else now + self.ttl_s
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    # An upsert, not INSERT OR REPLACE: REPLACE's implicit delete skips the size triggers.
                    "INSERT INTO entries (key, value, size, expires, last_access) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, size = excluded.size, "
                    "expires = excluded.expires, last_access = excluded.last_access",
                    (entry.key, blob, size, expires, now),
                )
                expired = db.execute(
                    "DELETE FROM entries WHERE rowid IN "
                    "(SELECT rowid FROM entries WHERE expires <= ? LIMIT ?)",
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
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.counters.incr("stores")
        if expired:
            self.counters.incr("expirations", expired)
        if evicted:
            self.counters.incr("evictions", evicted)
        return True

    def remove(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries")

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()
        return int(n)

    @property
    def nbytes(self) -> int:
        """Stored (compressed) bytes of all entries, whichever process wrote them."""
        with self._lock:
            (total,) = self._db.execute("SELECT total FROM meta WHERE id = 0").fetchone()
        return int(total)

    def close(self) -> None:
        with self._lock:
            self._db.close()
