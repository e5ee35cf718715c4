"""Client-overhead attribution: a run whose event loop is blocked by a CPU hog is flagged client-limited,
a quiet run of the same workload against the same server is not (both judged in this test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from workbench.experiments.bench_report import client_overhead, markdown_report
from workbench.experiments.runner import acompare
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations
from workbench.simulator import Profile
from workbench.simulator.process import ProcessSimulator


@pytest.fixture(scope="module")
def sim() -> Iterator[ProcessSimulator]:
    # 20 ms between tokens, server in its own process: a quiet client's lag is a small share of that
    with ProcessSimulator(Profile.instant(ttft_ms=20.0, token_delay_ms=20.0, seed=5)) as s:
        yield s


async def _hog(stop: asyncio.Event) -> None:
    """Holds the loop with pure CPU for 15 ms out of every ~17 ms (a slow parser or callback would)."""
    while not stop.is_set():
        end = time.perf_counter() + 0.015
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0.002)


async def test_blocked_loop_is_flagged_and_quiet_run_is_not(sim: ProcessSimulator) -> None:
    wl = Workload.synthetic(8, output_tokens=12, model=sim.profile.models[0])
    kwargs = {"backend": sim.backend("openai"), "arrival": "concurrency=4", "progress": False, "warmup": 0}
    quiet = await acompare(wl, {"q": Optimizations.all()}, **kwargs)  # type: ignore[arg-type]
    stop = asyncio.Event()
    hog = asyncio.create_task(_hog(stop))
    try:
        busy = await acompare(wl, {"q": Optimizations.all()}, **kwargs)  # type: ignore[arg-type]
    finally:
        stop.set()
        await hog
    q_share = quiet.measured.get_column("client_share").median()
    b_share = busy.measured.get_column("client_share").median()
    assert isinstance(q_share, float) and isinstance(b_share, float)
    print(f"client share: quiet {q_share:.3f}, blocked loop {b_share:.3f}")
    assert b_share > 3 * q_share, (q_share, b_share)
    assert busy.meta["client_lag"]["client_lag_p99_ms"] > quiet.meta["client_lag"]["client_lag_p99_ms"]
    assert any("client-limited" in w for w in busy.warnings)
    assert not any("client-limited" in w for w in quiet.warnings), quiet.warnings
    b_line, q_line = client_overhead(busy), client_overhead(quiet)
    assert b_line is not None and b_line[0] and q_line is not None and not q_line[0]
    assert "CLIENT-LIMITED" in markdown_report(busy) and "CLIENT-LIMITED" not in markdown_report(quiet)
