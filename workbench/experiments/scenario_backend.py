"""The seed claims a real server can answer, measured on any `Backend` (notebook 05 runs them on llama.cpp).

    from workbench.llm import LlamaServer
    from workbench.experiments.scenario_backend import run_on_backend
    with LlamaServer() as llm:
        real = run_on_backend(llm.backend(), llm.model)
    seed_claims(sim_result, others={"llama.cpp": real})

The simulator scenarios (`scenario_cases`) shape the server so each toggle's effect exists (TLS, a cold model,
a fast token rate). A real server comes as it is, so only the toggles whose claim a real server can speak to
run here (pooling, the exact cache, early cancel, prewarm, the worker pool), with answers of a few tokens so a
CPU model answers them in seconds. Whether a toggle acted is read from the runner's facts of each run
(`meta["exercised"]`): llama.cpp keeps its model loaded from the start, so a warm-up has no cold model to
load and prewarm says "not exercised" there, not an effect. The rows have the same columns as
`run_scenarios`' table, so `seed_claims` judges both alike.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from workbench._types import Backend, Timeouts
from workbench.client import AsyncClient
from workbench.experiments.results import RunResult
from workbench.experiments.runner import compare
from workbench.experiments.scenario_cases import Measured, _ab, _StopAfter
from workbench.experiments.scenarios import _SCHEMA, ScenarioResult, _row, scenario_for
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations

__all__ = ["REAL_SCENARIOS", "run_on_backend"]

# The scenarios whose claim a real server can answer; the others need a shaped server (a token rate beyond
# a CPU model's, HTTP/2, TLS) or are about the client alone (the view, the router: the simulator's figure
# holds).
REAL_SCENARIOS: tuple[str, ...] = ("pool", "exact", "cancel", "prewarm", "concurrency")

_SETTINGS = {
    "pool": "plain HTTP on 127.0.0.1, 2-token answers, sequential",
    "exact": "3 prompts asked 3 times each, 4-token answers; e2e of the repeats",
    "cancel": "stop after 2 of 24 tokens",
    "prewarm": "first request of a run, model as the server keeps it",
    "concurrency": "batch of 4 (4-token answers), 1 vs 4 workers",
}


def _workload(n: int, out_tokens: int, seed: int, model: str) -> Workload:
    return Workload.synthetic(
        n, input_tokens=16, output_tokens=out_tokens, seed=seed, model=model
    ).with_options(max_tokens=out_tokens)


def _col(run: RunResult, variant: str, metric: str) -> list[float]:
    f = run.measured.filter((pl.col("variant") == variant) & (pl.col("status") == "ok"))
    return [float(x) for x in f.get_column(metric).drop_nulls().to_list()]


def _med(values: list[float]) -> float:
    return float(sorted(values)[len(values) // 2]) if values else float("nan")


def _fact(runs: Sequence[RunResult], toggle: str) -> tuple[bool, str]:
    """(acted in any run, the runner's evidence): decided from the run's facts, not the toggle's name."""
    evidence = []
    for run in runs:
        fact = (run.meta.get("exercised") or {}).get(toggle)
        if fact is None:
            continue
        if fact["exercised"]:
            return True, str(fact["evidence"])
        evidence.append(str(fact["evidence"]))
    return False, evidence[0] if evidence else "the runner recorded no fact for this toggle"


def _pool(backend: Backend, model: str, n: int, seed: int) -> Measured:
    run = _ab(
        _workload(n, 2, seed, model),
        Optimizations(),
        Optimizations(connection_pool=True),
        backend,
        seed,
        warmup=1,
    )
    a, b = _col(run, "baseline", "e2e_ms"), _col(run, "toggle", "e2e_ms")
    ca, cb = _col(run, "baseline", "connect_ms"), _col(run, "toggle", "connect_ms")
    acted, why = _fact([run], "connection_pool")
    saved = _med(a) - _med(b)
    return Measured(
        a,
        b,
        exercised=acted,
        why_not=why,
        detail=f"{why}; connect {_med(ca):.2f} -> {_med(cb):.2f} ms; saved {saved:.1f} ms/request",
        numbers={"saved_ms": saved},
    )


def _exact(backend: Backend, model: str, n: int, seed: int) -> Measured:
    wl = _workload(max(2, n // 2), 4, seed, model)
    run = _ab(wl, Optimizations(), Optimizations(exact_cache=True), backend, seed, repeats=3)
    hits = run.measured.filter((pl.col("variant") == "toggle") & (pl.col("cache") == "exact"))
    hit_e2e = [float(x) for x in hits.get_column("e2e_ms").drop_nulls().to_list()]
    hit_ttft = [float(x) for x in hits.get_column("ttft_ms").drop_nulls().to_list()]
    # the 2nd and 3rd asks only (the ones a cache can answer): not a bimodal pool of first-ask misses and hits
    asks = dataclasses.replace(run, frame=run.frame.filter(pl.col("repeat") > 0))
    a, b = _col(asks, "baseline", "e2e_ms"), _col(asks, "toggle", "e2e_ms")
    acted, why = _fact([run], "exact_cache")
    return Measured(
        a,
        b,
        exercised=acted,
        why_not=why,
        detail=f"{hits.height}/{len(b)} exact hits; hit e2e {_med(hit_e2e):.2f} ms, hit ttft "
        f"{_med(hit_ttft) * 1000:.0f} µs",
        numbers={"hit_e2e_ms": _med(hit_e2e), "hit_ttft_us": _med(hit_ttft) * 1000, "miss_e2e_ms": _med(a)},
    )


def _cancel(backend: Backend, model: str, n: int, seed: int, k: int = 2, tokens: int = 24) -> Measured:
    def factory(be: Backend, opts: Optimizations, timeouts: Timeouts) -> Any:
        return _StopAfter(AsyncClient(be, optimizations=opts, timeouts=timeouts), k)

    base, on = Optimizations(connection_pool=True), Optimizations(connection_pool=True, early_cancel=True)
    run = _ab(_workload(n, tokens, seed, model), base, on, backend, seed, client_factory=factory)
    wasted: dict[str, list[float]] = {"baseline": [], "toggle": []}
    for r in run.results:
        variant = str(r.request.tags.get("variant"))
        if variant in wasted and r.wasted_ms_after_stop is not None:
            wasted[variant].append(float(r.wasted_ms_after_stop))
    acted, why = _fact([run], "early_cancel")
    return Measured(
        wasted["baseline"],
        wasted["toggle"],
        exercised=acted and bool(wasted["toggle"]),
        why_not=why,
        detail=f"after the stop: {_med(wasted['baseline']):.1f} -> {_med(wasted['toggle']):.2f} ms",
        numbers={"base_stop_ms": _med(wasted["baseline"]), "cancel_stop_ms": _med(wasted["toggle"])},
    )


def _alternating(trials: int, seed: int) -> list[bool]:
    rng = random.Random(seed)
    out: list[bool] = []
    for _ in range(trials):
        pair = [False, True]
        rng.shuffle(pair)
        out.extend(pair)
    return out


def _prewarm(backend: Backend, model: str, n: int, seed: int) -> Measured:
    arms: dict[bool, list[float]] = {False: [], True: []}
    runs: list[RunResult] = []
    wl = _workload(1, 4, seed, model)
    for on in _alternating(max(2, n // 2), seed):
        run = compare(wl, {"v": Optimizations(prewarm=on)}, backend=backend, progress=False, seed=seed)
        arms[on].extend(_col(run, "v", "ttft_ms"))
        if on:
            runs.append(run)
    acted, why = _fact(runs, "prewarm")
    return Measured(
        arms[False],
        arms[True],
        exercised=acted,
        why_not=why,
        detail=f"first-request ttft {_med(arms[False]):.0f} -> {_med(arms[True]):.0f} ms",
        numbers={"cold_ttft_ms": _med(arms[False]), "warm_ttft_ms": _med(arms[True])},
    )


def _concurrency(
    backend: Backend, model: str, n: int, seed: int, batch: int = 4, workers: int = 4
) -> Measured:
    arms: dict[bool, list[float]] = {False: [], True: []}
    runs: list[RunResult] = []
    wl = _workload(batch, 4, seed, model)
    for on in _alternating(max(2, n // 2), seed):
        opts = Optimizations(connection_pool=True, concurrency=workers if on else 1)
        run = compare(wl, {"v": opts}, backend=backend, progress=False, seed=seed)
        f = run.measured.filter(pl.col("status") == "ok")
        if f.height:
            arms[on].append(
                (max(f.get_column("end_ns").to_list()) - min(f.get_column("sent_ns").to_list())) / 1e6
            )
        if on:
            runs.append(run)
    acted, why = _fact(runs, "concurrency")
    a, b = _med(arms[False]), _med(arms[True])
    return Measured(
        arms[False],
        arms[True],
        exercised=acted,
        why_not=why,
        detail=f"{why}; batch {a:.0f} -> {b:.0f} ms; {batch * 1000 / a:.1f} -> {batch * 1000 / b:.1f} req/s",
        numbers={"base_req_s": batch * 1000 / a, "pool_req_s": batch * 1000 / b},
    )


_RUN: dict[str, Callable[[Backend, str, int, int], Measured]] = {
    "pool": _pool,
    "exact": _exact,
    "cancel": _cancel,
    "prewarm": _prewarm,
    "concurrency": _concurrency,
}


def run_on_backend(
    backend: Backend,
    model: str,
    keys: Sequence[str] = REAL_SCENARIOS,
    *,
    n: int = 6,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ScenarioResult:
    """The `REAL_SCENARIOS` (or `keys` among them) against `backend` serving `model`, one row each.

    `n`: requests per arm (pool, cancel), prompts x 3 repeats / 2 (exact), trials / 2 (prewarm, concurrency).
    A scenario that fails gives a row saying why instead of losing the others.
    """
    unknown = [k for k in keys if k not in _RUN]
    if unknown:
        raise KeyError(f"no real-server scenario {unknown}; known: {', '.join(REAL_SCENARIOS)}")
    rows: list[dict[str, Any]] = []
    measured: dict[str, Measured] = {}
    for key in keys:
        s = dataclasses.replace(scenario_for(key), setting=_SETTINGS[key])
        if progress is not None:
            progress(f"{key}: {s.toggle} ({s.setting})")
        t0 = time.perf_counter()
        try:
            m = _RUN[key](backend, model, n, seed)
        except Exception as exc:  # one broken scenario must not hide the others' results
            m = Measured([], [], exercised=False, why_not=f"scenario failed: {type(exc).__name__}: {exc}")
        measured[key] = m
        rows.append(_row(s, m, time.perf_counter() - t0, seed))
    return ScenarioResult(pl.DataFrame(rows, schema=_SCHEMA), measured)
