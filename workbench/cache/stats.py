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
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import NamedTuple

import polars as pl

__all__ = ["COUNTERS", "Counters", "EventLog", "LookupEvent"]

COUNTERS: tuple[str, ...] = ("hits", "misses", "stores", "evictions", "expirations", "rejected", "errors")


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
