"""The in-memory exact tier: a bounded LRU (max entries AND max bytes) with a TTL.

Locking: one ``threading.Lock`` guards the ``OrderedDict``; every critical section is O(1) (a dict
lookup, a ``move_to_end``, a ``popitem``). Expiry never blocks lookups:

* lazy: a lookup that finds an expired entry drops it and reports a miss;
* incremental sweep: the TTL is the same for every entry, so insertion order is expiry order. A deque of
  ``(expires_at, key, generation)`` in insertion order lets the sweep pop only entries that are already due,
  at most ``batch`` per lock hold, releasing the lock between batches. Every ``put`` runs one small batch,
  so expired entries leave memory even when nobody reads them; ``sweep()`` runs batches until none is due.

Counters (hits, misses, ...) are `Counters` (per-thread, lock-free); see `workbench.cache.counters`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from workbench.cache.counters import Counters
from workbench.cache.entry import CacheEntry

__all__ = ["ExactTier"]


@dataclass(slots=True)
class _Slot:
    entry: CacheEntry
    expires_at: float
    generation: int


class ExactTier:
    """LRU + TTL over `CacheEntry`. `ttl_s=None` keeps entries until evicted. Thread-safe."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float | None = 3600.0,
        sweep_batch: int = 32,
        clock: Callable[[], float] = time.monotonic,
        on_drop: Callable[[list[str]], None] | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.sweep_batch = sweep_batch
        self._clock = clock
        # Called (outside the lock) with the keys evicted or expired, e.g. to drop them from a semantic index.
        self.on_drop = on_drop
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Slot] = OrderedDict()
        self._expiry: deque[tuple[float, str, int]] = deque()
        self._bytes = 0
        self._gen = itertools.count()
        self.counters = Counters()

    # ---- lookups ----

    def get(self, key: str) -> CacheEntry | None:
        now = self._clock()
        expired = False
        with self._lock:
            slot = self._data.get(key)
            if slot is not None:
                if slot.expires_at <= now:
                    self._drop(key, slot)
                    slot, expired = None, True
                else:
                    self._data.move_to_end(key)
        if slot is None:
            self.counters.incr("misses")
            if expired:
                self.counters.incr("expirations")
                self._dropped([key])
            return None
        self.counters.incr("hits")
        return slot.entry

    def peek(self, key: str) -> CacheEntry | None:
        """Like `get` but counts nothing and leaves the LRU order alone (for the semantic tier's fetch)."""
        now = self._clock()
        with self._lock:
            slot = self._data.get(key)
            if slot is None or slot.expires_at <= now:
                return None
            return slot.entry

    def __contains__(self, key: str) -> bool:
        return self.peek(key) is not None

    # ---- stores ----

    def put(self, entry: CacheEntry) -> bool:
        """Store; False when the entry alone is bigger than `max_bytes` (counted as `rejected`)."""
        size = max(entry.nbytes, 1)
        if size > self.max_bytes:
            self.counters.incr("rejected")
            return False
        expires_at = float("inf") if self.ttl_s is None else self._clock() + self.ttl_s
        gen = next(self._gen)
        evicted: list[str] = []
        with self._lock:
            old = self._data.pop(entry.key, None)
            if old is not None:
                self._bytes -= max(old.entry.nbytes, 1)
            self._data[entry.key] = _Slot(entry, expires_at, gen)
            self._bytes += size
            if self.ttl_s is not None:
                self._expiry.append((expires_at, entry.key, gen))
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                k, s = self._data.popitem(last=False)
                self._bytes -= max(s.entry.nbytes, 1)
                evicted.append(k)
        self.counters.incr("stores")
        if evicted:
            self.counters.incr("evictions", len(evicted))
            self._dropped(evicted)
        self._sweep_batch()
        return True

    def remove(self, key: str) -> bool:
        with self._lock:
            slot = self._data.get(key)
            if slot is None:
                return False
            self._drop(key, slot)
            return True

    def clear(self, *, all_namespaces: bool = False) -> None:
        """Drop every entry. A memory tier belongs to one `ResponseCache`, so one namespace: the flag is
        accepted for the tier interface and changes nothing."""
        with self._lock:
            self._data.clear()
            self._expiry.clear()
            self._bytes = 0

    # ---- expiry ----

    def _drop(self, key: str, slot: _Slot) -> None:
        # caller holds the lock
        del self._data[key]
        self._bytes -= max(slot.entry.nbytes, 1)

    def _sweep_batch(self) -> tuple[int, bool]:
        """Expire at most `sweep_batch` due entries under one short lock hold. Returns (expired, more_due)."""
        now = self._clock()
        expired: list[str] = []
        with self._lock:
            for _ in range(self.sweep_batch):
                if not self._expiry:
                    break
                due_at, key, gen = self._expiry[0]
                slot = self._data.get(key)
                # A stale record (key re-stored under a new generation, evicted or removed) is dropped even
                # before it is due, so the deque stays near the live entry count.
                stale = slot is None or slot.generation != gen
                if not stale and due_at > now:
                    break
                self._expiry.popleft()
                if slot is not None and not stale:
                    self._drop(key, slot)
                    expired.append(key)
            more = bool(self._expiry) and self._expiry[0][0] <= now
        if expired:
            self.counters.incr("expirations", len(expired))
            self._dropped(expired)
        return len(expired), more

    def _dropped(self, keys: list[str]) -> None:
        if self.on_drop is not None:
            self.on_drop(keys)

    def sweep(self) -> int:
        """Expire every due entry, one small batch per lock hold. Returns how many were expired."""
        total = 0
        while True:
            n, more = self._sweep_batch()
            total += n
            if not more:
                return total

    # ---- gauges ----

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._data)
