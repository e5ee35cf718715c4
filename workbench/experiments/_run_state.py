"""One run's state: its clients and hooks, stop handling, the collected results and per-request timings.

`RunState.one` sends one slot of the plan and stamps its schedule, worker-pool wait and memory delta;
`timing_frame` turns those stamps into the runner's timing columns. Split from runner.py, which builds the
plan, drives the arrival schedule and assembles the RunResult.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from workbench._exceptions import WorkbenchError
from workbench._types import Backend, Request, StreamEvent, StreamResult
from workbench.experiments._monitor import Monitor
from workbench.experiments._toggles import prewarm
from workbench.metrics.recorder import Recorder
from workbench.optimizations import Optimizations
from workbench.router import Router

if TYPE_CHECKING:
    from workbench.experiments.runner import Slot

OnEvent = Callable[[str, Request, StreamEvent], None]
OnResult = Callable[[str, StreamResult], None]


class Settable(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class _Timing:
    scheduled_ns: int
    ready_ns: int = 0
    acquired_ns: int = 0
    rss_delta: int = 0


class RunState:
    """State of one run: clients, hooks, stop handling, collected results and timings."""

    def __init__(
        self,
        backend: Backend,
        clients: Mapping[str, Any],
        on_event: OnEvent | None,
        on_result: OnResult | None,
        stop: Settable | None,
        progress: Any,
        monitor: Monitor,
    ) -> None:
        self.backend = backend
        self.clients = clients
        self.on_event = on_event
        self.on_result = on_result
        self.stop = stop
        self.progress = progress
        self.monitor = monitor
        self.stopping = False
        self.inflight: dict[str, Any] = {}
        self.results: list[StreamResult] = []
        self.timings: dict[str, _Timing] = {}
        self.unexpected: list[str] = []
        # Runner-side toggles (set by acompare; the defaults leave a bare RunState as it was).
        self.opts: dict[str, Optimizations] = {}
        self.router: Router | None = None
        self.tier_clients: dict[tuple[str, str], Any] = {}  # (variant, tier) -> client on another server
        self.warm_targets: dict[str, list[tuple[Any, str]]] = {}  # variant -> (client, model) to prewarm
        self.prewarms: dict[str, list[dict[str, Any]]] = {}
        self._prewarm_locks: dict[str, asyncio.Lock] = {}
        self.block = 1
        self.interleave = True
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    async def watch_stop(self) -> None:
        # threading.Event or asyncio.Event: both have is_set(); polling keeps one code path for both.
        while not self.stopping:
            if self.stop is not None and self.stop.is_set():
                self.stopping = True
                for s in list(self.inflight.values()):
                    s.cancel()
                return
            await asyncio.sleep(0.02)

    async def one(
        self,
        slot: Slot,
        request: Request,
        scheduled_ns: int,
        sem: asyncio.Semaphore | None,
        ready_ns: int | None = None,
    ) -> None:
        """Run one slot. `ready_ns`: when it was handed to a worker pool (its wait for a free worker is
        `client_queue_ms`); default now."""
        timing = _Timing(scheduled_ns, ready_ns=time.perf_counter_ns() if ready_ns is None else ready_ns)
        self.timings[request.id] = timing
        if sem is not None:
            await sem.acquire()
        try:
            timing.acquired_ns = time.perf_counter_ns()
            if self.stopping:
                return
            # untimed: the variant's first request waits for its warm-up, which is not in the frame
            await self._prewarm(slot.variant)
            timing.acquired_ns = time.perf_counter_ns()
            if self.stopping:
                return
            request = self._route(slot.variant, request)
            v = slot.variant
            self.in_flight[v] = self.in_flight.get(v, 0) + 1
            self.max_in_flight[v] = max(self.max_in_flight.get(v, 0), self.in_flight[v])
            rss0 = self.monitor.rss()
            try:
                result = await self._execute(slot.variant, request)
            finally:
                self.in_flight[v] -= 1
            timing.rss_delta = self.monitor.rss() - rss0
        finally:
            if sem is not None:
                sem.release()
        self.results.append(result)
        if self.progress is not None:
            self.progress.update(1)
        if self.on_result is not None:
            self.on_result(slot.variant, result)

    async def _prewarm(self, variant: str) -> None:
        """`prewarm`: once per variant, before its first request, load each model it may be sent to."""
        opts = self.opts.get(variant)
        if opts is None or not opts.prewarm or variant in self.prewarms:
            return
        lock = self._prewarm_locks.setdefault(variant, asyncio.Lock())
        async with lock:  # a worker pool's first N requests all wait for the one warm-up
            if variant in self.prewarms:
                return
            records = [await prewarm(c, model, self.backend) for c, model in self.warm_targets[variant]]
            self.prewarms[variant] = records

    def _route(self, variant: str, request: Request) -> Request:
        """With a router: re-address `request` to its tier; the decision's columns ride in its tags."""
        if self.router is None:
            return request
        opts = self.opts.get(variant)
        routed, _ = self.router.apply(request, fast_path=bool(opts and opts.router_fast_path))
        return routed

    async def _execute(self, variant: str, request: Request) -> StreamResult:
        client = self.tier_clients.get((variant, str(request.tags.get("tier"))), self.clients[variant])
        try:
            async with client.stream(request) as s:
                self.inflight[request.id] = s
                if self.stopping:
                    s.cancel()
                async for ev in s:
                    if self.on_event is not None:
                        self.on_event(variant, request, ev)
            result: StreamResult = s.result
            return result
        except WorkbenchError as exc:
            if exc.result is not None:
                return exc.result
            return self._failed(request, exc)
        except Exception as exc:  # a benchmark keeps going; the row and a run warning show what broke
            self.unexpected.append(f"{type(exc).__name__}: {exc}")
            return self._failed(request, exc)
        finally:
            self.inflight.pop(request.id, None)

    def _failed(self, request: Request, exc: BaseException) -> StreamResult:
        proto = self.backend.protocol if self.backend.protocol != "auto" else "openai"
        rec = Recorder(request, backend=self.backend.label, protocol=proto)
        rec.sent()
        return rec.finish("error", error=exc)


def timing_frame(run: RunState, t0: int) -> pl.DataFrame:
    ids, sched, disp, queue, sent_lag, rss = [], [], [], [], [], []
    sent = {r.request.id: r.sent_ns for r in run.results}
    for rid, t in run.timings.items():
        if rid not in sent:
            continue
        ids.append(rid)
        sched.append((t.scheduled_ns - t0) / 1e6)
        disp.append(max(t.ready_ns - t.scheduled_ns, 0) / 1e6)
        queue.append(max(t.acquired_ns - t.ready_ns, 0) / 1e6)
        s = sent[rid] or t.acquired_ns
        sent_lag.append((s - t.scheduled_ns) / 1e6)
        rss.append(t.rss_delta)
    return pl.DataFrame(
        {
            "request_id": ids,
            "scheduled_ms": sched,
            "dispatch_lag_ms": disp,
            "client_queue_ms": queue,
            "sent_lag_ms": sent_lag,
            "rss_delta_bytes": rss,
        },
        schema={
            "request_id": pl.String(),
            "scheduled_ms": pl.Float64(),
            "dispatch_lag_ms": pl.Float64(),
            "client_queue_ms": pl.Float64(),
            "sent_lag_ms": pl.Float64(),
            "rss_delta_bytes": pl.Int64(),
        },
    )
