"""Checks run at the end of a run: sending slower than offered, more in flight than the pool has
connections, and the caches' own lookup timings. Each returns plain data for `RunResult.meta`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from workbench.client import pool_limits
from workbench.experiments.arrivals import Arrival, Concurrency, Rate
from workbench.optimizations import Optimizations

__all__ = ["cache_stats", "pool_warning", "rate_warning"]


def rate_warning(arrival: Arrival, frame: pl.DataFrame) -> str | None:
    """An open loop that sent slower than offered, and why: the in-flight cap (queue) or a late dispatcher."""
    if not isinstance(arrival, Rate) or "warmup" not in frame.columns:
        return None
    f = frame.filter(~pl.col("warmup").fill_null(False))
    sent = f.get_column("sent_ns").drop_nulls().sort()
    if sent.len() < 10:
        return None
    achieved = (sent.len() - 1) / ((int(sent[-1]) - int(sent[0])) / 1e9)
    if achieved >= 0.9 * arrival.rate:
        return None
    queue = f.get_column("client_queue_ms").quantile(0.99) or 0.0
    lag = f.get_column("dispatch_lag_ms").quantile(0.99) or 0.0
    why = (
        f"the cap of {arrival.max_concurrency} in flight was full (client_queue_ms p99 {queue:.0f} ms)"
        if queue >= lag
        else f"the dispatcher ran late (dispatch lag p99 {lag:.0f} ms): the client could not keep up"
    )
    return f"offered {arrival.rate:g} req/s but sent {achieved:.1f} req/s: {why}"


def pool_warning(arrival: Arrival, variants: Mapping[str, Optimizations]) -> str | None:
    """More requests in flight than the client's HTTP/1.1 connection limit: the excess waits inside httpx for
    a connection after the send stamp, so that wait lands in TTFT instead of in `client_queue_ms`."""
    in_flight = arrival.n if isinstance(arrival, Concurrency) else getattr(arrival, "max_concurrency", 1)
    limit = pool_limits(fast=True).max_connections  # the async client's HTTP/1.1 pool
    if limit is None or in_flight <= limit:
        return None
    affected = [name for name, opt in variants.items() if opt.connection_pool and not opt.http2]
    if not affected:
        return None
    return (
        f"{in_flight} requests may be in flight but the pooled HTTP/1.1 client opens at most {limit} "
        f"connections ({', '.join(affected)}): the excess waits for a connection inside TTFT; "
        f"use a cap <= {limit} (e.g. rate=R,cap={limit}) to see that wait as client_queue_ms"
    )


def cache_stats(clients: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per variant: cache lookups and lookup latency (µs) from the cache's own event log, when it has one."""
    out: dict[str, dict[str, float]] = {}
    for name, client in clients.items():
        events = getattr(getattr(client, "cache", None), "events_frame", None)
        if events is None:
            continue
        ev = events()
        if ev.height == 0:
            continue
        us = ev.get_column("lookup_us")
        out[name] = {
            "lookups": float(ev.height),
            "hits": float(ev.get_column("kind").is_in(["exact", "semantic"]).sum()),
            "lookup_us_p50": float(us.quantile(0.5) or 0.0),
            "lookup_us_p99": float(us.quantile(0.99) or 0.0),
        }
    return out
