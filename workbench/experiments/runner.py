"""The runner: A/B comparisons, ablations and sweeps, variants interleaved so drift hits all of them alike.

One AsyncClient per variant, honouring that variant's Optimizations. The run order is a plan of slots
(variant, repeat, prompt) built up front and seeded; the arrival mode decides when each slot is sent.
Per request the frame records the scheduled time, the dispatch lag (the event loop was late), the time spent
waiting for a free slot (`client_queue_ms`) and the send lag (scheduled -> the client's send stamp), so
client-side queueing is never hidden inside TTFT.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from workbench._exceptions import ConfigError, StatusError
from workbench._types import Backend, Request, Timeouts
from workbench.client import AsyncClient
from workbench.experiments._checks import cache_stats, pool_warning, rate_warning
from workbench.experiments._monitor import LoopLag, Monitor, client_limited_warning
from workbench.experiments._run_state import OnEvent, OnResult, RunState, Settable, timing_frame
from workbench.experiments._toggles import arm_run, batches, make_clients, run_pool, view_frame
from workbench.experiments.arrivals import (
    Arrival,
    Concurrency,
    Sequential,
    Sweep,
    parse_arrival,
    schedule_ns,
    sleep_until_ns,
)
from workbench.experiments.exercised import exercised
from workbench.experiments.results import RunResult, environment
from workbench.experiments.verdicts import SLO
from workbench.experiments.workloads import Workload
from workbench.metrics.frames import to_frame
from workbench.optimizations import Optimizations
from workbench.router import Router

__all__ = [
    "ClientFactory",
    "Slot",
    "aablation",
    "ablation",
    "ablation_variants",
    "acompare",
    "compare",
    "plan",
    "sweep",
]


class ClientFactory(Protocol):
    """Builds the async client for one variant. The default is `workbench.experiments.clients.make_client`."""

    def __call__(self, backend: Backend, optimizations: Optimizations, timeouts: Timeouts) -> Any: ...


@dataclass(frozen=True, slots=True)
class Slot:
    variant: str
    repeat: int
    index: int
    warmup: bool = False


def plan(
    n_items: int,
    variants: Sequence[str],
    *,
    repeats: int = 1,
    interleave: bool = True,
    warmup: int = 0,
    block: int = 1,
    seed: int = 0,
) -> list[Slot]:
    """The run order. Interleaved: for each block of `block` prompts, every variant runs that block, in a
    seeded random variant order (so no variant is always first). Not interleaved: variant after variant.
    Warm-up slots (`warmup` per variant, their own prompts) come first and are interleaved the same way.
    """
    rng = random.Random(seed)
    names = list(variants)
    out: list[Slot] = []

    def blocks(n: int, repeat: int, is_warm: bool) -> None:
        if not interleave:
            for v in names:
                out.extend(Slot(v, repeat, i, is_warm) for i in range(n))
            return
        for start in range(0, n, block):
            order = names[:]
            rng.shuffle(order)
            for v in order:
                out.extend(Slot(v, repeat, i, is_warm) for i in range(start, min(start + block, n)))

    if warmup > 0:
        blocks(warmup, 0, True)
    for r in range(repeats):
        blocks(n_items, r, False)
    return out


async def _drive(
    run: RunState,
    arrival: Arrival,
    slots: Sequence[Slot],
    requests: Sequence[Request],
    seed: int,
    start_ns: int | None = None,
    offset_ns: int = 0,
) -> int:
    """Send the measured slots as the arrival mode says. Returns the run start (perf_counter_ns).

    `start_ns` (worker processes): the shared start instant on the monotonic clock, so every worker's
    schedule begins together; `offset_ns` shifts this worker's open-loop schedule (its phase in the whole).
    """
    if start_ns is not None:
        await sleep_until_ns(start_ns)
    t0 = time.perf_counter_ns() if start_ns is None else start_ns
    if isinstance(arrival, Sequential):
        pools = {v: o.concurrency for v, o in run.opts.items()}
        for batch in batches(
            [s.variant for s in slots], pools, block=run.block, interleave=run.interleave
        ):
            if run.stopping:
                break
            if len(batch) == 1:
                await run.one(slots[batch[0]], requests[batch[0]], time.perf_counter_ns(), None)
            else:
                await run_pool(run, [(slots[i], requests[i]) for i in batch], pools[slots[batch[0]].variant])
    elif isinstance(arrival, Concurrency):
        it = iter(zip(slots, requests, strict=True))

        async def worker() -> None:
            for slot, req in it:  # a shared iterator: each worker takes the next slot when it is free
                if run.stopping:
                    return
                await run.one(slot, req, time.perf_counter_ns(), None)

        await asyncio.gather(*(worker() for _ in range(min(arrival.n, len(slots)) or 1)))
    else:
        offsets = schedule_ns(len(slots), arrival.rate, poisson=arrival.poisson, seed=arrival.seed + seed)
        sem = asyncio.Semaphore(arrival.max_concurrency)
        # A short lead so the first deadline is not already late when the loop gets to it.
        t0 = (time.perf_counter_ns() + 5_000_000 if start_ns is None else start_ns) + offset_ns
        tasks: list[asyncio.Task[None]] = []
        for slot, req, off in zip(slots, requests, offsets.tolist(), strict=True):
            if run.stopping:
                break
            deadline = t0 + int(off)
            await sleep_until_ns(deadline)
            tasks.append(asyncio.create_task(run.one(slot, req, deadline, sem)))
        await asyncio.gather(*tasks)
    return t0


def _variants(variants: Mapping[str, Optimizations] | Sequence[Optimizations]) -> dict[str, Optimizations]:
    if isinstance(variants, Mapping):
        out = dict(variants)
    else:
        out = {}
        for opt in variants:
            name = opt.label()
            out[name if name not in out else f"{name}#{len(out)}"] = opt
    if not out:
        raise ValueError("give at least one variant")
    return out


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    # imported by name: tqdm ships no type stubs
    tqdm = importlib.import_module("tqdm.auto").tqdm
    return tqdm(total=total, desc=desc, unit="req", leave=False)


async def _listed_model(backend: Backend, timeouts: Timeouts) -> str:
    """The server's first listed model, asked on a client of its own (no variant starts warm)."""
    async with AsyncClient(backend, timeouts=timeouts) as client:
        try:
            return await client.default_model()
        except StatusError as exc:  # the list is only a default: naming the model skips it
            exc.hint += "; or pass the model name (--model) so the server's model list is not needed"
            raise


async def acompare(
    workload: Workload,
    variants: Mapping[str, Optimizations] | Sequence[Optimizations],
    *,
    backend: Backend | str,
    repeats: int = 1,
    interleave: bool = True,
    arrival: Arrival | str | None = None,
    warmup: int = 0,
    on_event: OnEvent | None = None,
    on_result: OnResult | None = None,
    stop: Settable | None = None,
    progress: bool = True,
    seed: int = 0,
    block: int = 1,
    timeouts: Timeouts | None = None,
    client_factory: ClientFactory | None = None,
    baseline: str | None = None,
    slo: SLO | None = None,
    router: Router | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    executor: str = "process",
    start_gate: Callable[[], Awaitable[int]] | None = None,
    schedule_offset_ns: int = 0,
) -> RunResult:
    """Run every variant over `workload` (`repeats` times), interleaved, and return the measurements.

    `arrival`: "sequential" (default), "concurrency=N" (closed loop) or "rate=R[,poisson]" (open loop from an
    absolute schedule, at most `cap` in flight). `warmup` requests per variant run first, marked
    `warmup=True` and excluded from summaries. `stop` (threading.Event or asyncio.Event) ends the run
    promptly: in-flight streams are cancelled and no new request is sent. A workload without a model runs
    on the first model the server lists. `workers=N` spreads the streams (or the arrival schedule) over N
    processes (`executor="process"`) or Ray actors (`executor="ray"`), merged into one result
    (workbench.experiments.workers). `start_gate`/`schedule_offset_ns` are that module's hooks.

    The runner-side toggles of each variant act here:
    - `prewarm`: before the variant's first request (warm-up slots included), one untimed warm-up per model
      it may be sent to, on its own client (`_toggles.prewarm`); kept out of the frame, reported in
      `meta["prewarm"]`. Variants share the server: a model one variant loaded is warm for the next too.
    - `concurrency=N`: the variant's bounded worker pool. With the sequential arrival, the variant's
      requests go out in batches of N x `block` (all of them when not interleaved), each batch through N
      workers: up to N in flight, the wait for a free worker in `client_queue_ms`, rows in submission order;
      batches of different variants never overlap (N=1 is the plain sequential run; not interleaved it is a
      closed loop of N workers). The "concurrency=N" and "rate=R" arrivals set the load for every variant
      alike and do not use the pool (`meta["exercised"]` then says so).
    - `router=` (a `workbench.router.Router`; None: no routing): every request goes through
      `router.apply(request, fast_path=opts.router_fast_path)` before it is sent, to the tier's model (and
      server: a tier on another URL gets a client of its own); `tier`, `routing_us` and `route_fast_path`
      land in the frame.
    - `disk_cache`: in `cache_dir`/<variant> when given (kept across runs and processes: a later run
      answers from it), else in a temporary folder per variant removed with its client;
      `meta["disk_cache"]` says which.
    """
    if workers > 1:
        if router is not None or cache_dir is not None:
            raise ConfigError(
                "router= and cache_dir= act in one process only",
                hint="run with workers=1 (the default) to route requests or keep a disk cache",
            )
        if on_event is not None or on_result is not None or client_factory is not None:
            # callbacks and factories would run in the worker processes, out of the caller's reach
            raise ConfigError(
                "on_event=, on_result= and client_factory= act in one process only",
                hint="run with workers=1, or read the merged frame after the run",
            )
        from workbench.experiments.workers import arun_workers

        return await arun_workers(
            workload, variants, backend=backend, workers=workers, executor=executor, repeats=repeats,
            interleave=interleave, arrival=arrival, warmup=warmup, seed=seed, block=block,
            timeouts=timeouts, baseline=baseline, slo=slo, stop=stop,
        )  # fmt: skip
    be = Backend(backend) if isinstance(backend, str) else backend
    named = _variants(variants)
    arr = parse_arrival(arrival)
    to = timeouts or Timeouts()
    if workload.model is None:
        workload = workload.with_options(model=await _listed_model(be, to))
    slots = plan(
        len(workload),
        list(named),
        repeats=repeats,
        interleave=interleave,
        warmup=warmup,
        block=block,
        seed=seed,
    )

    def make_request(slot: Slot) -> Request:
        tags = {"variant": slot.variant, "repeat": slot.repeat, "warmup": slot.warmup, "arrival": arr.label()}
        if slot.warmup:
            return workload.warmup_request(slot.index, **tags)
        return workload.request(workload.items[slot.index], **tags)

    requests = [make_request(s) for s in slots]
    warm = [(s, r) for s, r in zip(slots, requests, strict=True) if s.warmup]
    measured = [(s, r) for s, r in zip(slots, requests, strict=True) if not s.warmup]
    clients, tier_clients, disk_meta = make_clients(be, named, to, client_factory, router, cache_dir)
    monitor = Monitor()
    bar = _progress_bar(len(slots), progress, arr.label())
    run = RunState(be, clients, on_event, on_result, stop, bar, monitor)
    arm_run(run, named, tier_clients, router, str(workload.model), block=block, interleave=interleave)
    watcher = asyncio.create_task(run.watch_stop())
    lag = LoopLag()
    wall0 = time.perf_counter_ns()
    try:
        monitor.start()
        lag.start()
        for slot, req in warm:
            if run.stopping:
                break
            await run.one(slot, req, time.perf_counter_ns(), None)
        start_ns = await start_gate() if start_gate is not None else None
        t0 = await _drive(
            run, arr, [s for s, _ in measured], [r for _, r in measured], seed, start_ns, schedule_offset_ns
        )
    finally:
        await lag.stop()
        monitor.stop()
        run.stopping = True
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if bar is not None:
            bar.close()
        caches = cache_stats(clients)
        await _close_clients(clients)
        await _close_clients({f"{v}/{t}": c for (v, t), c in tier_clients.items()})
    wall_s = (time.perf_counter_ns() - wall0) / 1e9
    order = {r.id: i for i, r in enumerate(requests)}
    results = sorted(run.results, key=lambda r: order.get(r.request.id, 0))
    frame = to_frame(results)
    frame = frame.join(timing_frame(run, t0), on="request_id", how="left").with_columns(
        # What the user waited counting from when the request was due: queueing is shown, never hidden.
        (pl.col("sent_lag_ms") + pl.col("ttft_ms")).alias("ttft_from_schedule_ms"),
        (pl.col("sent_lag_ms") + pl.col("e2e_ms")).alias("e2e_from_schedule_ms"),
    )
    frame = frame.join(lag.per_request(frame), on="request_id", how="left")
    frame = frame.join(view_frame(results), on="request_id", how="left")
    warnings = []
    if run.unexpected:
        warnings.append(f"{len(run.unexpected)} request(s) failed unexpectedly, first: {run.unexpected[0]}")
    shortfall = rate_warning(arr, frame)
    if shortfall:
        warnings.append(shortfall)
    pool = pool_warning(arr, named)
    if pool:
        warnings.append(pool)
    limited = client_limited_warning(frame)
    if limited:
        warnings.append(limited)
    if run.stopping and stop is not None and stop.is_set():
        warnings.append(f"stopped early: {len(results)} of {len(slots)} requests ran")
    config = {
        "workload": workload.describe(),
        "prompts": workload.to_records(),
        "variants": {k: v.as_dict() for k, v in named.items()},
        "backend": {"url": be.url, "protocol": be.protocol, "name": be.name, "verify": str(be.verify)},
        "repeats": repeats,
        "interleave": interleave,
        "block": block,
        "arrival": arr.label(),
        "warmup": warmup,
        "seed": seed,
        "timeouts": {
            "connect": to.connect,
            "first_token": to.first_token,
            "idle": to.idle,
            "total": to.total,
        },
        "baseline": baseline or next(iter(named)),
        "slo": None if slo is None else slo.limits(),
    }
    meta = {
        "environment": environment(),
        "wall_s": wall_s,
        "cpu_samples": monitor.loop_cpu_percent(),
        "process_cpu_samples": monitor.process_cpu_percent(),
        "client_lag": lag.summary(),
        "t0_ns": t0,
        "rss_start_bytes": monitor.rss_start,
        "rss_end_bytes": monitor.rss_end,
        "warnings": warnings,
        "cache": caches,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prewarm": run.prewarms,
        "disk_cache": disk_meta,
        "max_in_flight": run.max_in_flight,
        "router": None if router is None else repr(router),
    }
    meta["exercised"] = exercised(frame, meta, config)
    return RunResult(frame=frame, config=config, meta=meta, results=results)


async def _close_clients(clients: Mapping[str, Any]) -> None:
    for c in clients.values():
        closer = getattr(c, "aclose", None)
        if closer is not None:
            await closer()
        else:
            close = getattr(c, "close", None)
            if close is not None:
                out = close()
                if isinstance(out, Awaitable):
                    await out


def _run_sync(coro_fn: Callable[[], Coroutine[Any, Any, RunResult]]) -> RunResult:
    """Run a coroutine to completion from sync code, also inside a notebook whose loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_fn())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name="workbench-compare", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    value: RunResult = box["value"]
    return value


def compare(
    workload: Workload, variants: Mapping[str, Optimizations] | Sequence[Optimizations], **kwargs: Any
) -> RunResult:
    """Blocking twin of `acompare` (same arguments). `stop` should be a threading.Event here."""
    return _run_sync(lambda: acompare(workload, variants, **kwargs))


def ablation_variants(
    base: Optimizations | None = None, baseline: Optimizations | None = None
) -> dict[str, Optimizations]:
    """`all-on`, each toggle off one at a time from `base`, the baseline, and each toggle on alone."""
    top = base or Optimizations.all()
    bottom = baseline or Optimizations.baseline()
    out: dict[str, Optimizations] = {"baseline": bottom, "all-on": top}
    for name, value in top.as_dict().items():
        if name == "concurrency" or value == getattr(bottom, name):
            continue
        out[f"-{name}"] = top.replace(**{name: getattr(bottom, name)})
        out[f"+{name}"] = bottom.replace(**{name: value})
    return out


async def aablation(workload: Workload, base: Optimizations | None = None, **kwargs: Any) -> RunResult:
    kwargs.setdefault("baseline", "baseline")
    return await acompare(workload, ablation_variants(base), **kwargs)


def ablation(workload: Workload, base: Optimizations | None = None, **kwargs: Any) -> RunResult:
    """Each toggle off one at a time from all-on (`-name`), and on alone from the baseline (`+name`)."""
    return _run_sync(lambda: aablation(workload, base, **kwargs))


def sweep(
    workload: Workload,
    variants: Mapping[str, Optimizations] | Sequence[Optimizations],
    levels: Sweep | str,
    **kwargs: Any,
) -> list[RunResult]:
    """One run per arrival level (rates or concurrency levels), in order; rows carry the `arrival` tag."""
    from workbench.experiments.arrivals import parse_sweep

    sw = parse_sweep(levels) if isinstance(levels, str) else levels
    return [compare(workload, variants, arrival=a, **kwargs) for a in sw.arrivals()]
