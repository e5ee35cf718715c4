"""One scenario per toggle, in the setting where its effect exists, on the built-in simulator.

    from workbench.experiments.scenarios import run_scenarios
    res = run_scenarios()                  # or run_scenarios(["pool", "http2"], n=12)
    res.table                              # one row per toggle: metric, medians, factor, CI, verdict
    res.chart()                            # factor with its CI per toggle, log axis, 1 marked

A unique-prompt sequential workload cannot show most toggles (a cache never hits, one stream never
multiplexes), so each toggle gets the workload that exercises it: pooling over TLS with short answers,
HTTP/2 with many concurrent streams, fast parsing at a high token rate with many tokens per chunk, caches on
repeats and paraphrases, the disk tier across a process restart, early cancel with stops after k tokens,
prewarm against a cold model, concurrency on a batch, the router's fast path on policy-forced prompts, and
the view toggles on a fast stream. Baseline and toggle-on run interleaved through the runner's `compare`
where the metric is per request; where it is per run (a batch's makespan, a cold start's first request)
trials alternate in a seeded order. `factor` > 1 means the toggle helps; the verdict says "faster",
"slower", "no detectable difference" (the 95% bootstrap CI contains 1) or "not exercised" (the workload
did not make the toggle act, e.g. the cache never hit: no effect is claimed either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench.experiments import scenario_cases as cases
from workbench.experiments.scenario_cases import Measured
from workbench.metrics.summary import ratio_ci

__all__ = ["SCENARIOS", "Measured", "Scenario", "ScenarioResult", "run_scenarios", "scenario_for"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A toggle's scenario: where it acts, what is measured, and the function that measures it."""

    key: str  # short name for `workbench bench --scenarios key,...`
    toggle: str  # the Optimizations field it flips
    setting: str  # the workload, in words
    metric: str  # what is compared, with its unit
    run: Callable[[int, int], Measured]  # (n per arm, seed) -> measurements
    n: int  # default samples per arm (small: the whole default set runs in about 2 minutes)
    higher_is_better: bool = False
    words: tuple[str, str] = ("faster", "slower")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("pool", "connection_pool", "TLS, 4-token answers, sequential", "e2e_ms", cases.pool, 16),
    Scenario("http2", "http2", "TLS, 24 streams in flight, pooled both arms", "ttft_ms", cases.http2, 48),
    Scenario(
        "parse",
        "fast_parse",
        "instant server, 4,000 tokens, 32 tokens per chunk",
        "stream_tok_s",
        cases.parse,
        8,
        higher_is_better=True,
    ),
    Scenario(
        "coalesce",
        "coalesce_ui",
        "widget fed ~5,000 tok/s, headless",
        "ui_messages",
        cases.coalesce,
        6,
        words=("fewer", "more"),
    ),
    Scenario(
        "incremental",
        "incremental_render",
        "widget fed ~5,000 tok/s, headless",
        "ui_bytes",
        cases.incremental,
        6,
        words=("fewer", "more"),
    ),
    Scenario(
        "exact", "exact_cache", "6 prompts asked 3 times each; e2e of the repeats", "e2e_ms", cases.exact, 6
    ),
    Scenario(
        "semantic",
        "semantic_cache",
        "8 questions, then each retyped; e2e of the retyped",
        "e2e_ms",
        cases.semantic,
        8,
    ),
    Scenario("disk", "disk_cache", "filled by one process, read by a new one", "e2e_ms", cases.disk, 8),
    Scenario("prewarm", "prewarm", "cold model (400 ms load), first request", "ttft_ms", cases.prewarm, 6),
    Scenario(
        "concurrency",
        "concurrency",
        "batch of 8 (30 ms TTFT, 16 tokens), 1 vs 4 workers",
        "batch_ms",
        cases.concurrency,
        4,
    ),
    Scenario("cancel", "early_cancel", "stop after 4 of 120 tokens", "wasted_ms_after_stop", cases.cancel, 8),
    Scenario(
        "router",
        "router_fast_path",
        "labelled prompt set, policy-forced prompts",
        "routing_us",
        cases.router,
        200,
    ),
)


def scenario_for(toggle_or_key: str) -> Scenario:
    """The scenario of a toggle (`connection_pool`) or by its key (`pool`)."""
    for s in SCENARIOS:
        if toggle_or_key in (s.key, s.toggle):
            return s
    known = ", ".join(s.key for s in SCENARIOS)
    raise KeyError(f"no scenario {toggle_or_key!r}; known: {known} (or a toggle name)")


_SCHEMA = {
    "toggle": pl.String(),
    "scenario": pl.String(),
    "setting": pl.String(),
    "metric": pl.String(),
    "n_baseline": pl.Int64(),
    "n_toggle": pl.Int64(),
    "baseline_median": pl.Float64(),
    "toggle_median": pl.Float64(),
    "factor": pl.Float64(),
    "ci_lo": pl.Float64(),
    "ci_hi": pl.Float64(),
    "verdict": pl.String(),
    "detail": pl.String(),
    "seconds": pl.Float64(),
}


def _verdict(s: Scenario, m: Measured, factor: float, lo: float, hi: float) -> str:
    if not m.exercised:
        return "not exercised"
    if not all(np.isfinite(x) and x > 0 for x in (factor, lo, hi)):
        return "not enough data"
    if lo <= 1.0 <= hi:
        return "no detectable difference"
    return s.words[0] if lo > 1.0 else s.words[1]


def _row(s: Scenario, m: Measured, seconds: float, seed: int) -> dict[str, Any]:
    a = np.asarray(m.baseline, dtype=float)
    b = np.asarray(m.toggled, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    factor = lo = hi = float("nan")
    if a.size >= 2 and b.size >= 2:
        # The improvement factor: baseline/toggle for costs, toggle/baseline for rates (> 1: it helps).
        num, den = (b, a) if s.higher_is_better else (a, b)
        # A cost measured as 0 (nothing wasted) would make the ratio infinite; 1 µs is below any clock here.
        num, den = np.maximum(num, 1e-3), np.maximum(den, 1e-3)
        factor, lo, hi = ratio_ci(num, den, stat="median", n_boot=2000, seed=seed)
    return {
        "toggle": s.toggle,
        "scenario": s.key,
        "setting": s.setting,
        "metric": s.metric,
        "n_baseline": int(a.size),
        "n_toggle": int(b.size),
        "baseline_median": float(np.median(a)) if a.size else None,
        "toggle_median": float(np.median(b)) if b.size else None,
        "factor": factor,
        "ci_lo": lo,
        "ci_hi": hi,
        "verdict": _verdict(s, m, factor, lo, hi),
        "detail": m.detail if m.exercised else f"{m.detail} (not exercised: {m.why_not})".strip(),
        "seconds": seconds,
    }


@dataclass
class ScenarioResult:
    """The one-row-per-toggle table, plus each scenario's raw measurements (`measured[key]`)."""

    table: pl.DataFrame
    measured: dict[str, Measured] = field(default_factory=dict)

    def chart(self) -> Any:
        from workbench.experiments.scenario_report import scenario_chart

        return scenario_chart(self.table)

    def markdown(self) -> str:
        from workbench.experiments.scenario_report import scenario_markdown

        return scenario_markdown(self.table)

    def _repr_markdown_(self) -> str:
        return self.markdown()


def run_scenarios(
    keys: Sequence[str] | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ScenarioResult:
    """Run the scenarios (`keys`: scenario keys or toggle names; default all, one per toggle).

    `n`: samples per arm for every scenario (default: each scenario's own small n). A scenario that fails
    gives a row saying why instead of losing the others.
    """
    chosen = [scenario_for(k) for k in keys] if keys else list(SCENARIOS)
    rows: list[dict[str, Any]] = []
    measured: dict[str, Measured] = {}
    for s in chosen:
        if progress is not None:
            progress(f"{s.key}: {s.toggle} ({s.setting})")
        t0 = time.perf_counter()
        try:
            m = s.run(n if n is not None else s.n, seed)
        except Exception as exc:  # one broken scenario must not hide the others' results
            m = Measured([], [], exercised=False, why_not=f"scenario failed: {type(exc).__name__}: {exc}")
        measured[s.key] = m
        rows.append(_row(s, m, time.perf_counter() - t0, seed))
    return ScenarioResult(pl.DataFrame(rows, schema=_SCHEMA), measured)


def covered_toggles() -> set[str]:
    """The Optimizations fields that have a scenario (tests check every field has one)."""
    return {s.toggle for s in SCENARIOS}
