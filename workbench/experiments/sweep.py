"""The sweep as a first-class result: delivered against offered load per level, the knee, and its charts.

`workbench bench --sweep concurrency=1,8,64,256` (or `rate=10,50,100`) runs one comparison per level;
`sweep_frame(runs)` turns them into one row per (level, variant) and `knee(frame)` names the first level
where delivered/offered falls below 0.9: past it the figures describe a saturated system (server or client;
the `client_share` column says which).

What "offered" means:
- rate sweeps: the level's request rate times the mean output tokens per request (tokens/s asked for);
- concurrency sweeps: the level times the per-stream token rate measured at the sweep's lowest level, in the
  same run: C streams that each ran as fast as one stream alone would deliver C times its rate. (A server
  that batches could beat that; a ratio above 1 says so rather than being hidden.)
"Delivered" is output tokens over the completion span (first to last request end), so a client that falls
behind its schedule cannot hide it by stretching the sends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from workbench.experiments._monitor import CLIENT_SHARE_LIMIT
from workbench.experiments.results import RunResult

__all__ = ["KNEE_RATIO", "knee", "knee_line", "sweep_charts", "sweep_frame"]

KNEE_RATIO = 0.9


def _level(arrival: str) -> tuple[str, float]:
    """("concurrency", 8.0) from "concurrency=8"; ("rate", 50.0) from "rate=50,poisson"."""
    kind, _, rest = arrival.partition("=")
    try:
        return kind, float(rest.split(",")[0])
    except ValueError:
        return kind, math.nan


def _delivered(part: pl.DataFrame) -> tuple[float, int]:
    ok = part.filter(pl.col("status") == "ok")
    ends = ok.get_column("end_ns").drop_nulls()
    sent = ok.get_column("sent_ns").drop_nulls()
    tokens = int(ok.get_column("output_tokens").fill_null(0).sum())
    if ends.len() < 1 or sent.len() < 1:
        return math.nan, tokens
    span = (int(ends.max()) - int(sent.min())) / 1e9  # type: ignore[arg-type]
    return (tokens / span if span > 0 else math.nan), tokens


def _quantile(part: pl.DataFrame, col: str, q: float) -> float:
    if col not in part.columns:
        return math.nan
    s = part.get_column(col).drop_nulls()
    s = s.drop_nans() if s.dtype.is_float() else s
    v = s.quantile(q) if s.len() else None
    return float(v) if v is not None else math.nan


def sweep_frame(runs: Sequence[RunResult]) -> pl.DataFrame:
    """One row per (level, variant): offered/delivered tokens/s, their ratio, TTFT p50/p99, the client's
    loop lag and share, and `client_limited` (share above the runner's limit)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        kind, level = _level(str(run.config.get("arrival", "")))
        for v in run.variants:
            part = run.measured.filter(pl.col("variant") == v)
            delivered, tokens = _delivered(part)
            share = _quantile(part, "client_share", 0.5)
            rows.append(
                {
                    "kind": kind,
                    "level": level,
                    "variant": v,
                    "workers": int(run.config.get("workers", 1)),
                    "requests": part.height,
                    "errors": int((part.get_column("status") != "ok").sum()),
                    "mean_output_tokens": tokens / max(part.height, 1),
                    "delivered_tokens_per_s": delivered,
                    "ttft_p50_ms": _quantile(part, "ttft_ms", 0.5),
                    "ttft_p99_ms": _quantile(part, "ttft_ms", 0.99),
                    "client_lag_p99_ms": _quantile(part, "client_lag_p99_ms", 0.99),
                    "client_share": share,
                    "client_limited": bool(math.isfinite(share) and share > CLIENT_SHARE_LIMIT),
                }
            )
    if not rows:
        return pl.DataFrame()
    frame = pl.DataFrame(rows).sort("variant", "level", maintain_order=True)
    # Offered per variant: rate x tokens asked per request, or level x the lowest level's per-stream rate.
    lowest = frame.group_by("variant").agg(
        pl.col("level").min().alias("_lo"),
        pl.col("delivered_tokens_per_s").sort_by("level").first().alias("_lo_tps"),
    )
    frame = frame.join(lowest, on="variant", how="left").with_columns(
        pl.when(pl.col("kind") == "rate")
        .then(pl.col("level") * pl.col("mean_output_tokens"))
        .otherwise(pl.col("level") * pl.col("_lo_tps") / pl.col("_lo"))
        .alias("offered_tokens_per_s")
    )
    return (
        frame.with_columns(
            (pl.col("delivered_tokens_per_s") / pl.col("offered_tokens_per_s")).alias("delivered_ratio")
        )
        .drop("_lo", "_lo_tps")
        .sort("variant", "level")
    )


def knee(frame: pl.DataFrame, ratio: float = KNEE_RATIO) -> dict[str, float | None]:
    """Per variant: the first level whose delivered/offered is below `ratio` (None: it never fell)."""
    out: dict[str, float | None] = {}
    if frame.is_empty():
        return out
    for v in frame.get_column("variant").unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("variant") == v).sort("level")
        below = part.filter(pl.col("delivered_ratio") < ratio)
        out[v] = float(below.get_column("level")[0]) if below.height else None
    return out


def knee_line(frame: pl.DataFrame, ratio: float = KNEE_RATIO) -> str:
    """The knee in words, one clause per variant, saying whether the client was the limit there."""
    parts = []
    for v, level in knee(frame, ratio).items():
        if level is None:
            parts.append(f"{v}: delivered/offered stayed >= {ratio:g} at every level")
            continue
        row = frame.filter((pl.col("variant") == v) & (pl.col("level") == level)).row(0, named=True)
        who = (
            f"client-limited (client share {row['client_share']:.0%})"
            if row["client_limited"]
            else "the client was not the limit there (client share "
            + (f"{row['client_share']:.0%})" if math.isfinite(row["client_share"]) else "unknown)")
        )
        kind = row["kind"]
        parts.append(
            f"{v}: knee at {kind}={level:g} "
            f"(delivered/offered {row['delivered_ratio']:.2f} < {ratio:g}); {who}"
        )
    return "; ".join(parts)


def sweep_charts(frame: pl.DataFrame) -> list[Any]:
    """Delivered vs offered, and TTFT p50/p99 + client share per level (workbench.charts)."""
    from workbench import charts as ch
    from workbench.charts.sweep import sweep_latency_chart

    if frame.is_empty():
        return []
    kind = str(frame.get_column("kind")[0])
    return [
        ch.concurrency_sweep_chart(frame, label="level"),
        sweep_latency_chart(frame, level_title=kind, share_limit=CLIENT_SHARE_LIMIT),
    ]
