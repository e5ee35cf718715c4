"""Load from several processes: the split, one clock across processes, and a merged frame with every
request exactly once, against a simulator that itself serves from two processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import polars as pl
import pytest

from workbench.experiments.arrivals import Concurrency, Rate, Sequential, schedule_ns
from workbench.experiments.runner import acompare
from workbench.experiments.workers import split_arrival, split_workload
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations
from workbench.simulator import Profile
from workbench.simulator.process import ProcessSimulator


@pytest.fixture(scope="module")
def sim2() -> Iterator[ProcessSimulator]:
    with ProcessSimulator(Profile.instant(ttft_ms=5.0, token_delay_ms=2.0, seed=3), processes=2) as sim:
        yield sim


def test_perf_counter_ns_is_one_clock_across_processes() -> None:
    """Linux: perf_counter_ns reads CLOCK_MONOTONIC, system-wide; a child's reading lies between the
    parent's readings before and after it (a per-process clock would start near zero or drift apart)."""
    before = time.perf_counter_ns()
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(time.perf_counter_ns())"],
        capture_output=True,
        text=True,
        check=True,
    )
    after = time.perf_counter_ns()
    child = int(out.stdout.strip())
    assert before < child < after


def test_split_workload_gives_every_prompt_once() -> None:
    wl = Workload.synthetic(11, model="m")
    shares = split_workload(wl, 3)
    ids = [it.id for s in shares for it in s.items]
    assert sorted(ids) == sorted(it.id for it in wl.items)
    assert [len(s) for s in shares] == [4, 4, 3]


def test_split_arrival_rebuilds_the_single_process_schedule() -> None:
    conc = split_arrival(Concurrency(7), 3)
    assert [a.n for a, _ in conc] == [3, 2, 2]  # type: ignore[union-attr]
    n, rate = 12, 40.0
    parts = split_arrival(Rate(rate), 3)
    merged = sorted(
        int(off) + int(t)
        for i, (arr, off) in enumerate(parts)
        for t in schedule_ns(len(range(i, n, 3)), arr.rate).tolist()  # type: ignore[union-attr]
    )
    assert merged == pytest.approx(schedule_ns(n, rate).tolist(), abs=1_000)
    with pytest.raises(ValueError, match="sequential"):
        split_arrival(Sequential(), 2)


def test_simulator_serves_one_port_from_two_processes(sim2: ProcessSimulator) -> None:
    before = [c.get("/_sim/stats").json()["requests"] for c in sim2._controls]
    for i in range(24):
        with httpx.Client() as c:  # a fresh connection each time: the kernel picks the process per connection
            r = c.post(
                sim2.url + "/api/chat",
                json={
                    "model": sim2.profile.models[0],
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": False,
                },
                headers={"X-Request-Id": f"spread-{i}"},
            )
            assert r.status_code == 200
    after = [c.get("/_sim/stats").json()["requests"] for c in sim2._controls]
    served = [a - b for a, b in zip(after, before, strict=True)]  # /_sim calls are not counted
    assert sum(served) == 24 and all(s > 0 for s in served), served
    # each id is known to whichever process served it; every one is found
    assert all(sim2.ground_truth(f"spread-{i}").status == 200 for i in range(24))
    assert sim2.stats().requests >= 24


async def test_workers_merge_every_request_exactly_once(sim2: ProcessSimulator) -> None:
    wl = Workload.synthetic(24, output_tokens=8, model=sim2.profile.models[0])
    variants = {"A": Optimizations.all(), "B": Optimizations.baseline()}
    run = await acompare(
        wl,
        variants,
        backend=sim2.backend("openai"),
        arrival="concurrency=6",
        repeats=2,
        workers=2,
        progress=False,
    )
    m = run.measured
    assert m.height == 24 * 2 * 2
    assert m.get_column("request_id").n_unique() == m.height
    keys = set(m.select("variant", "repeat", "prompt_id").iter_rows())
    assert keys == {(v, r, it.id) for v in variants for r in range(2) for it in wl.items}
    assert (m.get_column("status") == "ok").all()
    assert set(m.get_column("worker").to_list()) == {0, 1}
    assert run.config["workers"] == 2 and run.config["arrival"] == "concurrency=6"
    # one clock: the two workers' streams overlap in time (both started at the shared instant)
    spans = m.group_by("worker").agg(
        pl.col("sent_ns").min().alias("first"), pl.col("end_ns").max().alias("last")
    )
    first, last = spans.get_column("first").to_list(), spans.get_column("last").to_list()
    assert max(first) < min(last)
    # released together: their first sends are a small part of the run apart (judged against the run itself,
    # not a clock bar: on a loaded machine a process may wait tens of ms for a core)
    assert abs(first[0] - first[1]) < 0.25 * (max(last) - min(first))
    assert "client_share" in m.columns and m.get_column("client_lag_ms").drop_nulls().len() > 0


async def test_workers_refuse_what_cannot_cross_processes(sim2: ProcessSimulator) -> None:
    wl = Workload.synthetic(4, model=sim2.profile.models[0])
    with pytest.raises(ValueError, match="one process only"):
        await acompare(
            wl, [Optimizations.all()], backend=sim2.backend("openai"), arrival="concurrency=2", workers=2,
            on_event=lambda *_: None,
        )  # fmt: skip
    with pytest.raises(ValueError, match="at least 3 prompts"):
        await acompare(
            wl.head(2),
            [Optimizations.all()],
            backend=sim2.backend("openai"),
            arrival="concurrency=3",
            workers=3,
        )


async def test_rate_split_over_workers_keeps_the_one_schedule(sim2: ProcessSimulator) -> None:
    wl = Workload.synthetic(20, output_tokens=2, model=sim2.profile.models[0])
    run = await acompare(
        wl,
        [Optimizations.all()],
        backend=sim2.backend("openai"),
        arrival="rate=100",
        workers=2,
        progress=False,
    )
    m = run.measured
    assert m.height == 20 and m.get_column("request_id").n_unique() == 20
    sched = m.get_column("scheduled_ms").sort()
    # worker 1's schedule is shifted by one gap: merged, the deadlines are every 10 ms from the shared start
    assert sched.to_list() == pytest.approx([10.0 * k for k in range(20)], abs=0.01)
    assert run.frame.get_column("arrival").unique().to_list() == ["rate=100"]
