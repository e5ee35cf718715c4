"""Cache statistics that never take a lock on the lookup path.

Why per-thread counters (and not a lock, nor ``itertools.count``): each thread increments its own list of
ints, reached through ``threading.local``, so an increment is a plain ``slots[i] += 1`` that no other thread
writes; there is nothing to race on, under the GIL or in a free-threaded build. ``itertools.count`` is
atomic only because of the GIL and has no way to read its value without bumping it. A thread's list is
registered once (under a lock, on that thread's first increment); reading sums every registered list. A
read can run while others increment: each total it returns lies between the counter's values at the start
and at the end of the read (counters only grow).

``hits + misses == lookups`` holds in *every* snapshot, not only at rest, because ``lookups`` is not a
counter of its own: it is defined as ``hits + misses``, and each lookup increments exactly one of the two.

`EventLog` is a ``collections.deque(maxlen=N)``: ``append`` is atomic and drops the oldest entry, so the
per-lookup log is bounded and also lock-free.

`TierHealth` is how a tier fails without costing an answer: each failure bumps the tier's ``errors`` counter
and keeps the real exception (``last_error``); the first failure of each *kind* (``SQLITE_FULL``,
``SQLITE_CORRUPT``, ``ConnectionError``, ...) per tier warns once with `CacheTierWarning`, so a full disk
under a 10k-request run says so once, not 10k times, while a second, different problem still gets heard.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from typing import NamedTuple

import polars as pl

__all__ = ["COUNTERS", "CacheTierWarning", "Counters", "EventLog", "LookupEvent", "TierHealth"]

# `skipped`: stores a tier failed to make (disk full, read-only, corrupt, unreachable); the answer was still
# returned to the caller. `errors` counts every failed operation of the tier (lookups and stores).
COUNTERS: tuple[str, ...] = (
    "hits",
    "misses",
    "stores",
    "evictions",
    "expirations",
    "rejected",
    "errors",
    "skipped",
)


class Counters:
    """Named monotonic counters, one private list per thread, summed on read. `reset()` keeps a baseline."""

    __slots__ = ("_all", "_baseline", "_index", "_local", "_names", "_reg_lock")

    def __init__(self, names: tuple[str, ...] = COUNTERS) -> None:
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}
        self._local = threading.local()
        self._all: list[list[int]] = []
        self._reg_lock = threading.Lock()
        self._baseline = [0] * len(names)

    def _slots(self) -> list[int]:
        try:
            slots: list[int] = self._local.slots
        except AttributeError:
            slots = [0] * len(self._names)
            with self._reg_lock:  # once per thread, never again on the hot path
                self._all.append(slots)
            self._local.slots = slots
        return slots

    def incr(self, name: str, n: int = 1) -> None:
        self._slots()[self._index[name]] += n

    def _raw(self) -> list[int]:
        with self._reg_lock:
            lists = list(self._all)
        totals = [0] * len(self._names)
        for slots in lists:
            for i, v in enumerate(slots):
                totals[i] += v
        return totals

    def snapshot(self) -> dict[str, int]:
        raw = self._raw()
        out = {n: raw[i] - self._baseline[i] for n, i in self._index.items()}
        if "hits" in out and "misses" in out:
            out["lookups"] = out["hits"] + out["misses"]
        return out

    def get(self, name: str) -> int:
        return self.snapshot()[name]

    def reset(self) -> None:
        """Zero the visible values. Other threads' lists are never written from here (that would race)."""
        self._baseline = self._raw()


class LookupEvent(NamedTuple):
    t_ms: float
    tier: str
    kind: str
    similarity: float | None
    lookup_us: float


class EventLog:
    """The last `maxlen` lookups: time since the log started, tier, kind, similarity, lookup µs."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: deque[LookupEvent] = deque(maxlen=maxlen)
        self._t0 = time.perf_counter_ns()

    @property
    def maxlen(self) -> int:
        return self._events.maxlen or 0

    def add(self, tier: str, kind: str, similarity: float | None, lookup_ns: int) -> None:
        now = time.perf_counter_ns()
        self._events.append(LookupEvent((now - self._t0) / 1e6, tier, kind, similarity, lookup_ns / 1e3))

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        self._events.clear()

    def frame(self) -> pl.DataFrame:
        rows = list(self._events.copy())  # deque.copy runs in C: appends cannot interleave
        return pl.DataFrame(
            {
                "t_ms": [e.t_ms for e in rows],
                "tier": [e.tier for e in rows],
                "kind": [e.kind for e in rows],
                "similarity": [e.similarity for e in rows],
                "lookup_us": [e.lookup_us for e in rows],
            },
            schema={
                "t_ms": pl.Float64,
                "tier": pl.Utf8,
                "kind": pl.Utf8,
                "similarity": pl.Float64,
                "lookup_us": pl.Float64,
            },
        )


class CacheTierWarning(RuntimeWarning):
    """A cache tier failed (disk full, corrupt file, read-only, locked, unreachable). The request went on
    without it: a failed lookup is a miss, a failed store is skipped. Warned once per tier and kind.
    """


def failure_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong: SQLite's error name (``SQLITE_FULL``, ``SQLITE_CORRUPT``,
    ``SQLITE_READONLY``, ``SQLITE_BUSY``, extended codes folded to their primary one), else the type name."""
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith("SQLITE_"):
        parts = name.split("_")
        return "_".join(parts[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    return type(exc).__name__


class TierHealth:
    """Failure bookkeeping for one tier: count, keep the last real error, warn once per kind."""

    __slots__ = ("_lock", "_warned", "counters", "last_error", "tier")

    def __init__(self, tier: str, counters: Counters) -> None:
        self.tier = tier
        self.counters = counters
        self.last_error: BaseException | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of failure seen so far (each warned once)."""
        with self._lock:
            return frozenset(self._warned)

    def failed(self, op: str, exc: BaseException, *, advice: str, store: bool = False) -> None:
        """Record a failed `op` ("lookup", "store", ...). `store=True` also counts a skipped store."""
        self.counters.incr("errors")
        if store:
            self.counters.incr("skipped")
        self.last_error = exc
        kind = failure_kind(exc)
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        warnings.warn(
            CacheTierWarning(
                f"{self.tier} cache tier: {op} failed ({kind}: {exc}); {advice}. "
                "further failures of this kind are only counted (stats_frame(): errors, skipped)"
            ),
            stacklevel=4,
        )
