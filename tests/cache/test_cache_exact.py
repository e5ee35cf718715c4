from __future__ import annotations

import random
import threading
import time

import pytest
from _cache_helpers import build_result

from workbench._types import Request
from workbench.cache import CacheEntry, Counters, ExactTier


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def entry(key: str, text: str = "abc") -> CacheEntry:
    return CacheEntry.from_result(key, build_result(Request.chat("m", key), [text]))


def test_lru_evicts_least_recently_used() -> None:
    t = ExactTier(max_entries=3, ttl_s=None)
    for k in "abc":
        t.put(entry(k))
    assert t.get("a") is not None  # a is now most recent
    t.put(entry("d"))
    assert t.keys() == ["c", "a", "d"]
    assert t.get("b") is None
    snap = t.counters.snapshot()
    assert snap["evictions"] == 1 and snap["hits"] == 1 and snap["misses"] == 1 and snap["stores"] == 4


def test_byte_bound() -> None:
    entries = [entry(f"k{i}", "y" * 1000) for i in range(10)]
    sizes = [e.nbytes for e in entries]  # within a few bytes of each other (stamps differ in digits)
    t = ExactTier(max_entries=100, max_bytes=max(sizes) * 3 + min(sizes) // 2, ttl_s=None)
    for e in entries:
        t.put(e)
        assert t.nbytes <= t.max_bytes
    assert len(t) == 3
    assert t.keys() == ["k7", "k8", "k9"]
    assert t.nbytes == sum(t.peek(k).nbytes for k in t.keys())  # type: ignore[union-attr]
    # an entry larger than the whole budget is rejected, nothing else is evicted for it
    assert not t.put(entry("huge", "z" * 10_000))
    assert len(t) == 3 and t.counters.get("rejected") == 1


def test_replacing_a_key_keeps_byte_count_exact() -> None:
    t = ExactTier(max_entries=10, ttl_s=None)
    t.put(entry("a", "short"))
    t.put(entry("a", "a much longer answer"))
    assert len(t) == 1 and t.nbytes == t.peek("a").nbytes  # type: ignore[union-attr]


def test_ttl_lazy_expiry_on_read() -> None:
    clock = FakeClock()
    t = ExactTier(max_entries=10, ttl_s=5, clock=clock)
    t.put(entry("a"))
    clock.t += 4.9
    assert t.get("a") is not None
    clock.t += 0.2
    assert t.get("a") is None
    assert len(t) == 0
    assert t.counters.get("expirations") == 1


def test_incremental_sweep_expires_in_small_batches() -> None:
    clock = FakeClock()
    t = ExactTier(max_entries=1000, ttl_s=5, sweep_batch=7, clock=clock)
    for i in range(100):
        t.put(entry(f"k{i}"))
    clock.t += 10
    # one put sweeps at most one batch of due entries
    t.put(entry("fresh"))
    assert len(t) == 101 - 7
    # the lock is free between batches: a lookup from another thread gets through mid-sweep
    n, more = t._sweep_batch()
    assert n == 7 and more
    assert t.sweep() == 100 - 14
    assert t.keys() == ["fresh"]
    assert t.counters.get("expirations") == 100


def test_sweep_ignores_stale_records_of_restored_keys() -> None:
    clock = FakeClock()
    t = ExactTier(max_entries=10, ttl_s=5, clock=clock)
    t.put(entry("a"))
    clock.t += 4
    t.put(entry("a"))  # re-stored: lives until t+9
    clock.t += 2
    assert t.sweep() == 0
    assert t.get("a") is not None
    assert len(t._expiry) == 1


def test_expiry_records_do_not_pile_up_under_churn() -> None:
    t = ExactTier(max_entries=10, ttl_s=3600)
    for i in range(5000):
        t.put(entry(f"k{i}"))
    assert len(t) == 10
    assert len(t._expiry) < 100


def test_counters_consistent_under_16_threads_x_10k_mixed_operations() -> None:
    t = ExactTier(max_entries=64, ttl_s=None)
    pre = [entry(f"k{i}") for i in range(128)]
    observed: list[dict[str, int]] = []
    barrier = threading.Barrier(16)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mine = {"hits": 0, "misses": 0, "stores": 0}
        barrier.wait()
        for _ in range(10_000):
            e = pre[rng.randrange(128)]
            if rng.random() < 0.3:
                t.put(e)
                mine["stores"] += 1
            elif t.get(e.key) is None:
                mine["misses"] += 1
            else:
                mine["hits"] += 1
        observed.append(mine)

    # a reader that snapshots while the writers run: every snapshot is self-consistent
    stop = threading.Event()
    bad: list[dict[str, int]] = []

    def reader() -> None:
        while not stop.is_set():
            s = t.counters.snapshot()
            if s["lookups"] != s["hits"] + s["misses"]:
                bad.append(s)
            # yield the GIL: a reader spinning without a pause starves the 16 writers (a lock convoy on
            # CPython 3.11) and the test then measures the scheduler, not the counters
            time.sleep(0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    rt = threading.Thread(target=reader)
    rt.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    rt.join()
    snap = t.counters.snapshot()
    assert not bad
    for name in ("hits", "misses", "stores"):
        assert snap[name] == sum(o[name] for o in observed), name
    assert snap["lookups"] == snap["hits"] + snap["misses"]
    assert snap["lookups"] + snap["stores"] == 160_000
    assert len(t) <= 64
    assert len(t) == 64 and snap["evictions"] > 1000  # churn really happened


def test_counters_reset_and_thread_private_slots() -> None:
    c = Counters(("hits", "misses"))
    c.incr("hits", 3)
    th = threading.Thread(target=lambda: c.incr("misses", 2))
    th.start()
    th.join()
    assert c.snapshot() == {"hits": 3, "misses": 2, "lookups": 5}
    c.reset()
    c.incr("hits")
    assert c.snapshot() == {"hits": 1, "misses": 0, "lookups": 1}


def test_bad_bounds() -> None:
    with pytest.raises(ValueError):
        ExactTier(max_entries=0)
