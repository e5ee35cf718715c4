from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from workbench._exceptions import ConfigError
from workbench.experiments import Concurrency, Rate, Sequential, parse_arrival, parse_sweep, schedule_ns
from workbench.experiments.arrivals import sleep_until_ns


def test_poisson_schedule_mean_rate_and_gap_distribution() -> None:
    rate, n = 200.0, 20_000
    offs = schedule_ns(n, rate, poisson=True, seed=7)
    assert offs[0] == 0 and offs.dtype == np.int64
    gaps = np.diff(offs) / 1e9
    assert np.all(gaps >= 0)
    measured = (n - 1) / (offs[-1] / 1e9)
    assert measured == pytest.approx(rate, rel=0.03)
    # exponential gaps: standard deviation equals the mean, and about 1/e of gaps exceed the mean
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)
    assert np.mean(gaps > 1 / rate) == pytest.approx(np.exp(-1), abs=0.02)


def test_poisson_schedule_is_deterministic_per_seed() -> None:
    a = schedule_ns(500, 50, poisson=True, seed=3)
    b = schedule_ns(500, 50, poisson=True, seed=3)
    c = schedule_ns(500, 50, poisson=True, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_constant_schedule_is_exact_and_absolute() -> None:
    offs = schedule_ns(1001, 250.0)
    assert offs[-1] == 4_000_000_000  # 1000 gaps of 4 ms, no accumulated rounding
    assert set(np.diff(offs).tolist()) == {4_000_000}


def test_parse_arrival_forms() -> None:
    assert parse_arrival(None) == Sequential()
    assert parse_arrival("sequential") == Sequential()
    assert parse_arrival("concurrency=8") == Concurrency(8)
    assert parse_arrival("rate=200") == Rate(200.0) and Rate(200.0).max_concurrency == 100
    assert parse_arrival("rate=50,poisson,cap=4,seed=9") == Rate(50.0, True, 4, 9)
    for bad in ("rate=0", "rate=x", "burst=3", "rate=5,wobble", "concurrency=0"):
        with pytest.raises(ConfigError):
            parse_arrival(bad)


def test_parse_sweep() -> None:
    sw = parse_sweep("concurrency=1,4,16")
    assert [a.label() for a in sw.arrivals()] == ["concurrency=1", "concurrency=4", "concurrency=16"]
    sw = parse_sweep("rate=10,20,poisson")
    assert sw.arrivals() == [Rate(10.0, True), Rate(20.0, True)]
    with pytest.raises(ConfigError):
        parse_sweep("rate=")


async def _wakes(sleep: Callable[[int], Awaitable[object]], stall_s: float) -> tuple[list[int], int]:
    """Lateness (ns) of 50 wake-ups due every 2 ms from now, with the loop blocked for `stall_s` after the
    10th; and how long that stall really lasted (ns)."""
    t0 = time.perf_counter_ns()
    lates, stalled = [], 0
    for k in range(1, 51):
        deadline = t0 + k * 2_000_000
        await sleep(deadline)
        woke = time.perf_counter_ns()
        assert woke >= deadline
        lates.append(woke - deadline)
        if k == 10:
            time.sleep(stall_s)  # a stall of the whole event loop (GC, a noisy neighbour, a slow callback)
            stalled = time.perf_counter_ns() - woke
    return lates, stalled


async def test_sleep_until_wakes_at_absolute_deadlines_without_drift() -> None:
    """Lateness does not accumulate: after a 100 ms stall the deadlines it swallowed fire at once and the
    schedule is back on time, so the last wake-ups are late by scheduler noise only, far less than the stall
    measured in the same run. The control, a relative sleep per period (what an open loop must not do),
    carries the whole stall to its last wake-ups in the same conditions, which shows the bar can fail."""
    lates, stalled = await _wakes(sleep_until_ns, 0.1)
    tail = float(np.median(lates[-10:]))  # a median: one wake-up hit by noise is not drift
    assert tail < 0.5 * stalled, f"last wake-ups {tail / 1e6:.1f} ms late after a {stalled / 1e6:.0f} ms stall"

    async def relative(deadline: int) -> None:
        await asyncio.sleep(0.002)

    drift, stalled = await _wakes(relative, 0.1)
    assert float(np.median(drift[-10:])) >= stalled, (drift[-10:], stalled)
