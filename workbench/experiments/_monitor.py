"""Samples the client's own CPU and memory during a run, to tell when the client was the bottleneck.

CPU is sampled for the event-loop thread alone (from /proc via psutil), because an embedded simulator may
share the process: whole-process CPU would blame the client for the server's work.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import polars as pl
import psutil

__all__ = ["CLIENT_SHARE_LIMIT", "LoopLag", "Monitor", "client_limited_warning", "client_share"]


class Monitor:
    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._tid = 0
        self._loop: list[float] = []
        self._process: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_start = 0
        self.rss_end = 0

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _thread_cpu_s(self) -> float:
        for t in self._proc.threads():
            if t.id == self._tid:
                return float(t.user_time + t.system_time)
        return 0.0

    def start(self) -> None:
        """Call from the event-loop thread: that is the thread whose CPU is watched."""
        self._tid = threading.get_native_id()
        self.rss_start = self.rss()
        self._thread = threading.Thread(target=self._sample, name="workbench-monitor", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        last_wall = time.perf_counter()
        last_cpu = self._thread_cpu_s()
        self._proc.cpu_percent(None)
        while not self._stop.wait(self.interval_s):
            wall, cpu = time.perf_counter(), self._thread_cpu_s()
            if wall > last_wall:
                self._loop.append(100.0 * (cpu - last_cpu) / (wall - last_wall))
            self._process.append(float(self._proc.cpu_percent(None)))
            last_wall, last_cpu = wall, cpu

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.rss_end = self.rss()

    def loop_cpu_percent(self) -> list[float]:
        """Event-loop thread CPU, % of one core, one value per interval."""
        return list(self._loop)

    def process_cpu_percent(self) -> list[float]:
        return list(self._process)


# ---- client-overhead attribution --------------------------------------------------------------------------
# The honest proxy for "how long did a chunk wait in the client before it was stamped": event-loop lag.
# A callback scheduled every `interval` ms records how late it ran; a chunk arriving while the loop is busy
# waits about as long as that callback did, because both wait for the same loop. Stamps are taken when the
# loop gets to the bytes, so this wait is inside every TTFT and ITL the client reports, and invisible there.

# epoll takes its timeout in whole milliseconds, rounded up, so even an idle loop wakes up to 1 ms late: that
# part is the kernel's timer granularity, not client work, and is not counted as lag.
TIMER_FLOOR_NS = 1_000_000
CLIENT_SHARE_LIMIT = 0.2  # a run whose client lag is above 20% of its inter-token latency is client-limited


class LoopLag:
    """Samples the running event loop's lag (a `call_later(interval)` callback run late by how much) as
    (t_ns, lag_ns) pairs on the perf_counter_ns clock. Start and stop from inside the loop being measured.

    A bare callback chain, not a task around `asyncio.sleep`: no Future or task step per tick, so the
    sampler itself costs the loop as little as it can (an A/B at 200 req/s open loop measured the
    sleep-based version ~4% slower than no sampler)."""

    def __init__(self, interval_ms: float = 5.0) -> None:
        self.interval_ns = int(interval_ms * 1e6)
        self.t_ns: list[int] = []
        self.lag_ns: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0

    def _tick(self) -> None:
        now = time.perf_counter_ns()
        self.t_ns.append(now)
        self.lag_ns.append(max(now - self._due - TIMER_FLOOR_NS, 0))
        self._schedule(now)

    def _schedule(self, now: int) -> None:
        assert self._loop is not None
        self._due = now + self.interval_ns
        self._handle = self._loop.call_later(self.interval_ns / 1e9, self._tick)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(time.perf_counter_ns())

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def summary(self) -> dict[str, float]:
        """`client_lag_p50_ms`, `client_lag_p99_ms`, `client_lag_max_ms` and the sample count."""
        lag = np.asarray(self.lag_ns, dtype=np.float64) / 1e6
        if lag.size == 0:
            return {"client_lag_samples": 0.0}
        return {
            "client_lag_samples": float(lag.size),
            "client_lag_mean_ms": float(lag.mean()),
            "client_lag_p50_ms": float(np.quantile(lag, 0.5)),
            "client_lag_p99_ms": float(np.quantile(lag, 0.99)),
            "client_lag_max_ms": float(lag.max()),
        }

    def per_request(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per request (by `request_id`): `client_lag_ms` (mean loop lag sampled while it streamed),
        `client_lag_p99_ms`, and `client_share` = mean lag / the request's mean ITL. The mean, not the
        median: behind a busy loop chunks arrive bunched, and the median gap of a bunch is about zero."""
        t = np.asarray(self.t_ns, dtype=np.int64)
        lag = np.asarray(self.lag_ns, dtype=np.float64) / 1e6
        ids, means, p99s, shares = [], [], [], []
        cols = ["request_id", "sent_ns", "end_ns", "itl_ms"]
        if not all(c in frame.columns for c in cols):
            return _empty_lag()
        for rid, sent, end, itl in frame.select(cols).iter_rows():
            if sent is None or end is None or t.size == 0:
                continue
            lo, hi = np.searchsorted(t, sent), np.searchsorted(t, end, side="right")
            if hi <= lo:
                continue
            window = lag[lo:hi]
            mean = float(window.mean())
            itl_med = float(np.mean(itl)) if itl else math.nan
            ids.append(rid)
            means.append(mean)
            p99s.append(float(np.quantile(window, 0.99)))
            shares.append(mean / itl_med if itl_med and itl_med > 0 else None)
        return pl.DataFrame(
            {"request_id": ids, "client_lag_ms": means, "client_lag_p99_ms": p99s, "client_share": shares},
            schema=_LAG_SCHEMA,
        )


_LAG_SCHEMA = {
    "request_id": pl.String(),
    "client_lag_ms": pl.Float64(),
    "client_lag_p99_ms": pl.Float64(),
    "client_share": pl.Float64(),
}


def _empty_lag() -> pl.DataFrame:
    return pl.DataFrame(schema=_LAG_SCHEMA)


def client_share(frame: pl.DataFrame) -> float:
    """The run's client share: median over measured requests of (loop lag / ITL); NaN without data."""
    if "client_share" not in frame.columns:
        return math.nan
    data = frame.filter(~pl.col("warmup").fill_null(False)) if "warmup" in frame.columns else frame
    col = data.get_column("client_share").drop_nulls().drop_nans()
    return float(col.median()) if col.len() else math.nan  # type: ignore[arg-type]


def client_limited_warning(frame: pl.DataFrame, limit: float = CLIENT_SHARE_LIMIT) -> str | None:
    """A warning when the client's own delay is a large share of the inter-token latency it measures."""
    share = client_share(frame)
    if not math.isfinite(share) or share <= limit:
        return None
    lag = frame.get_column("client_lag_p99_ms").drop_nulls()
    p99 = float(lag.quantile(0.99) or math.nan) if lag.len() else math.nan
    return (
        f"client-limited: the client's event loop ran {share:.0%} of an inter-token gap late (median; "
        f"lag p99 {p99:.1f} ms, limit {limit:.0%}); TTFT/ITL here describe the client, not the server. "
        "Use fewer streams per process (--workers N) or a faster client transport"
    )
