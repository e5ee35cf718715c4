"""Load from several processes: `acompare(..., workers=N)` / `workbench bench --workers N`.

One Python event loop tops out at a few thousand chunks/s (issue 13): past that, TTFT and ITL describe the
client, not the server. Here N worker processes (or Ray actors, `executor="ray"`) each run the ordinary
runner over their share of the work, and the parent merges their frames into one.

The split: worker i takes prompts i, i+N, i+2N, ... For `concurrency=C` it runs C/N streams (the
first C mod N workers one more); for `rate=R` it runs rate R/N with its schedule shifted by i/R, so the N
constant-gap schedules interleave into exactly the one schedule a single process would have followed
(Poisson: N independent seeded streams at R/N, whose sum is Poisson at R).

One clock: after its warm-up each worker waits at a gate; the parent releases all at one start instant.
On Linux `time.perf_counter_ns()` reads CLOCK_MONOTONIC, which is system-wide, so local workers share the
parent's clock and their `sent_ns`/`end_ns` stamps compare directly (tests/experiments/test_workers.py checks
that a child's reading lies between two of the parent's). Ray actors may sit on other machines whose
monotonic clocks differ: their gate is a wall-clock instant, and the merge shifts each worker's stamps so its
start instant lines up with the first worker's (aligned offsets); on one machine that shift is about zero.

Worker processes are spawned, not forked (the parent may hold threads: a simulator, the monitor), so a
script that calls `compare(..., workers=N)` needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from workbench._exceptions import ConfigError, WorkbenchError
from workbench._types import Backend, Timeouts
from workbench.experiments.arrivals import Arrival, Concurrency, Rate, Sequential, parse_arrival
from workbench.experiments.results import RunResult
from workbench.experiments.verdicts import SLO
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations

__all__ = ["WorkerSpec", "arun_workers", "merge_results", "split_arrival", "split_workload"]

# How far ahead of "everyone is ready" the shared start instant lies: long enough for the release message
# to reach every worker before it is due.
START_LEAD_NS = 100_000_000
READY_TIMEOUT_S = 120.0


@dataclass
class WorkerSpec:
    """What one worker runs: picklable, so it crosses to a process or a Ray actor unchanged."""

    index: int
    workload: Workload
    variants: dict[str, Optimizations]
    backend: Backend
    arrival: str
    offset_ns: int
    options: dict[str, Any] = field(default_factory=dict)


def split_workload(workload: Workload, n: int) -> list[Workload]:
    """Worker i gets prompts i, i+n, ...; every prompt lands in exactly one share."""
    if len(workload) < n:
        raise ConfigError(
            f"{n} workers need at least {n} prompts, the workload has {len(workload)}",
            hint="use fewer --workers or more prompts (--synthetic N, --limit)",
        )
    return [replace(workload, items=workload.items[i::n]) for i in range(n)]


def split_arrival(arrival: Arrival, n: int) -> list[tuple[Arrival, int]]:
    """Each worker's arrival mode and schedule offset (ns), as described in the module docstring."""
    if isinstance(arrival, Sequential):
        raise ConfigError(
            "workers split a concurrency or a rate, not sequential requests",
            hint=f"use --arrival concurrency={n} for {n} sequential streams, one per worker",
        )
    if isinstance(arrival, Concurrency):
        if arrival.n < n:
            raise ConfigError(
                f"concurrency={arrival.n} cannot be shared by {n} workers",
                hint="use at most as many workers as streams",
            )
        base, extra = divmod(arrival.n, n)
        return [(Concurrency(base + (1 if i < extra else 0)), 0) for i in range(n)]
    cap = max(1, math.ceil(arrival.max_concurrency / n))
    out: list[tuple[Arrival, int]] = []
    for i in range(n):
        if arrival.poisson:
            out.append((Rate(arrival.rate / n, True, cap, arrival.seed + 7919 * i), 0))
        else:
            out.append((Rate(arrival.rate / n, False, cap, arrival.seed), int(i * 1e9 / arrival.rate)))
    return out


def _label(arrival: Arrival) -> str:
    if isinstance(arrival, Rate):
        return f"rate={arrival.rate!r},cap={arrival.max_concurrency},seed={arrival.seed}" + (
            ",poisson" if arrival.poisson else ""
        )
    return arrival.label()


def run_spec(spec: WorkerSpec, gate: Callable[[], Awaitable[int]], stop: Any = None) -> dict[str, Any]:
    """Run one worker's share in this process (called inside a worker process or a Ray actor)."""
    from workbench.experiments.runner import compare

    started: dict[str, int] = {}

    async def gate_and_note() -> int:
        started["start_ns"] = await gate()
        return started["start_ns"]

    run = compare(
        spec.workload,
        spec.variants,
        backend=spec.backend,
        arrival=spec.arrival,
        start_gate=gate_and_note,
        schedule_offset_ns=spec.offset_ns,
        progress=False,
        stop=stop,
        **spec.options,
    )
    return {
        "index": spec.index,
        "frame": run.frame,
        "config": run.config,
        "meta": run.meta,
        "start_ns": started.get("start_ns", 0),
        "offset_ns": spec.offset_ns,
    }


# ---- local processes --------------------------------------------------------------------------------------


def _process_main(conn: Any, spec: WorkerSpec, stop: Any) -> None:
    """Entry point of a worker process: gate through the pipe, result (or the error) back through it."""

    async def gate() -> int:
        conn.send(("ready", spec.index))
        start: int = await asyncio.to_thread(conn.recv)
        return start

    try:
        conn.send(("done", run_spec(spec, gate, stop)))
    except BaseException as exc:  # the parent must hear why, not just see a dead process
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def _run_processes(specs: Sequence[WorkerSpec], stop: Any) -> list[dict[str, Any]]:
    # spawn, not fork: the parent may hold threads (a simulator, the monitor) that fork would copy half-way.
    ctx = multiprocessing.get_context("spawn")
    shared_stop = ctx.Event()
    pipes, procs = [], []
    for spec in specs:
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_process_main, args=(child, spec, shared_stop), name=f"workbench-worker-{spec.index}"
        )
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    try:
        results: dict[int, dict[str, Any]] = {}

        def receive(i: int, timeout_s: float) -> tuple[str, Any] | None:
            if stop is not None and stop.is_set():
                shared_stop.set()
            if not pipes[i].poll(timeout_s):
                if not procs[i].is_alive():
                    raise WorkbenchError(
                        f"worker process {i} exited with code {procs[i].exitcode} without a result",
                        hint="run with --workers 1 to see the error in this process",
                    )
                return None
            msg: tuple[str, Any] = pipes[i].recv()
            if msg[0] == "error":
                raise WorkbenchError(f"worker process {i} failed: {msg[1]}")
            return msg

        deadline = time.monotonic() + READY_TIMEOUT_S
        for i in range(len(specs)):  # every worker warm and waiting at the gate
            while (msg := receive(i, 0.1)) is None:
                if time.monotonic() > deadline:
                    raise WorkbenchError(f"worker process {i} not ready after {READY_TIMEOUT_S:.0f} s")
            if msg[0] == "done":  # stopped before the gate
                results[i] = msg[1]
        start_ns = time.perf_counter_ns() + START_LEAD_NS
        for i, pipe in enumerate(pipes):
            if i not in results:
                pipe.send(start_ns)
        for i in range(len(specs)):
            while i not in results:
                msg = receive(i, 0.1)
                if msg is not None and msg[0] == "done":
                    results[i] = msg[1]
        return [results[i] for i in range(len(specs))]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        for pipe in pipes:
            pipe.close()


# ---- the merge --------------------------------------------------------------------------------------------


def merge_results(parts: Sequence[Mapping[str, Any]], config: dict[str, Any]) -> RunResult:
    """One RunResult from the workers' parts: a `worker` column, stamps aligned on the first worker's
    start instant, `scheduled_ms` counted from the shared start, meta combined (per worker: `workers`)."""
    base = int(parts[0]["start_ns"])
    frames = []
    for part in parts:
        shift = base - int(part["start_ns"])
        f: pl.DataFrame = part["frame"]
        ns_cols = [c for c, t in f.schema.items() if c.endswith("_ns") and t.is_integer()]
        exprs = [(pl.col(c) + shift).alias(c) for c in ns_cols]
        if "scheduled_ms" in f.columns:
            exprs.append((pl.col("scheduled_ms") + int(part["offset_ns"]) / 1e6).alias("scheduled_ms"))
        frames.append(f.with_columns(*exprs, pl.lit(int(part["index"]), dtype=pl.Int32()).alias("worker")))
    frame = pl.concat(frames, how="diagonal_relaxed")
    if "scheduled_ms" in frame.columns:
        frame = frame.sort(
            "warmup", "scheduled_ms", "sent_ns", descending=[True, False, False], nulls_last=True
        )
    metas = [p["meta"] for p in parts]
    warnings = [f"worker {p['index']}: {w}" for p in parts for w in p["meta"].get("warnings", [])]
    ids = frame.get_column("request_id")
    if ids.n_unique() != frame.height:
        warnings.append(f"merged frame has {frame.height - ids.n_unique()} duplicate request id(s)")
    lags = [m.get("client_lag", {}) for m in metas]
    meta = {
        **{k: v for k, v in metas[0].items() if k not in ("warnings", "t0_ns")},
        "wall_s": max(float(m.get("wall_s", 0.0)) for m in metas),
        "cpu_samples": [x for m in metas for x in m.get("cpu_samples", [])],
        "process_cpu_samples": [x for m in metas for x in m.get("process_cpu_samples", [])],
        "rss_start_bytes": sum(int(m.get("rss_start_bytes", 0)) for m in metas),
        "rss_end_bytes": sum(int(m.get("rss_end_bytes", 0)) for m in metas),
        "client_lag": {
            k: max(float(d.get(k, math.nan)) for d in lags) for k in lags[0] if k != "client_lag_samples"
        },
        "warnings": warnings,
        "workers": [
            {
                "index": p["index"],
                "start_ns": p["start_ns"],
                "offset_ns": p["offset_ns"],
                "wall_s": p["meta"].get("wall_s"),
                "client_lag": p["meta"].get("client_lag"),
                "arrival": p["config"].get("arrival"),
                "requests": p["frame"].height,
            }
            for p in parts
        ],
    }
    return RunResult(frame=frame, config=config, meta=meta)


async def arun_workers(
    workload: Workload,
    variants: Mapping[str, Optimizations] | Sequence[Optimizations],
    *,
    backend: Backend | str,
    workers: int,
    executor: str = "process",
    arrival: Arrival | str | None = None,
    stop: Any = None,
    timeouts: Timeouts | None = None,
    baseline: str | None = None,
    slo: SLO | None = None,
    **options: Any,
) -> RunResult:
    """`acompare` spread over `workers` processes or Ray actors; see the module docstring."""
    from workbench.experiments.runner import _listed_model, _variants

    if executor not in ("process", "ray"):
        raise ConfigError(f"unknown executor {executor!r}", hint="use process or ray")
    be = Backend(backend) if isinstance(backend, str) else backend
    named = _variants(variants)
    arr = parse_arrival(arrival)
    to = timeouts or Timeouts()
    if workload.model is None:  # asked once here, so every worker runs the same model
        workload = workload.with_options(model=await _listed_model(be, to))
    shares = split_workload(workload, workers)
    arrivals = split_arrival(arr, workers)
    opts = {**options, "timeouts": to, "baseline": baseline, "slo": slo}
    specs = [
        WorkerSpec(i, shares[i], named, be, _label(arrivals[i][0]), arrivals[i][1], opts)
        for i in range(workers)
    ]
    wall0 = time.perf_counter_ns()
    if executor == "ray":
        from workbench.experiments.ray_executor import run_ray

        parts = await asyncio.to_thread(run_ray, specs)
    else:
        parts = await asyncio.to_thread(_run_processes, specs, stop)
    config = dict(parts[0]["config"])
    config.update(
        workload=workload.describe(),
        prompts=workload.to_records(),
        arrival=arr.label(),
        workers=workers,
        executor=executor,
    )
    run = merge_results(parts, config)
    if "arrival" in run.frame.columns:  # the tag said each worker's share; the run is the whole
        run.frame = run.frame.with_columns(pl.lit(arr.label()).alias("arrival"))
    run.meta["wall_s_parent"] = (time.perf_counter_ns() - wall0) / 1e9
    return run
