from __future__ import annotations

import polars as pl

from workbench import Backend, Optimizations
from workbench.experiments import Workload, compare
from workbench.experiments.bench_report import cache_table
from workbench.simulator import Simulator


def test_exact_cache_hits_exactly_the_repeats_of_the_shipped_prompt_set(fast_sim: Simulator) -> None:
    wl = Workload.prompts("mixed", max_tokens=4)
    run = compare(
        wl,
        {"plain": Optimizations(connection_pool=True), "exact": Optimizations(connection_pool=True, exact_cache=True)},
        backend=Backend(fast_sim.url, protocol="openai"),
        progress=False,
    )
    f = run.measured
    assert f["status"].unique().to_list() == ["ok"], f.filter(pl.col("status") != "ok")["error"].to_list()[:3]
    exact = f.filter(pl.col("variant") == "exact")
    assert exact.filter(pl.col("relation") == "repeat")["cache"].unique().to_list() == ["exact"]
    assert exact.filter(pl.col("relation") != "repeat")["cache"].unique().to_list() == ["miss"]
    assert f.filter(pl.col("variant") == "plain")["cache"].unique().to_list() == ["off"]
    # hits are answered without the server: their TTFT is far below a live response's
    hit_ttft = exact.filter(pl.col("cache") == "exact")["ttft_ms"].median()
    live_ttft = exact.filter(pl.col("cache") == "miss")["ttft_ms"].median()
    assert hit_ttft < live_ttft  # type: ignore[operator]
    assert run.meta["cache"]["exact"]["lookups"] == len(wl)
    table = cache_table(run)
    row = table.filter((pl.col("variant") == "exact") & (pl.col("relation") == "repeat")).row(0, named=True)
    assert row["exact"] == row["requests"] == 30
