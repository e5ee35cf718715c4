"""Timing charts of single streams and runs: TTFT / ITL histograms, throughput per variant, the per-token
timeline and the client's arrival lag behind the simulator's emit stamps (ground truth).

Each function takes a `workbench.metrics` frame (`to_frame`, `chunks_frame`, `itl_frame`), aggregates it in
polars first and returns a finished, themed chart ("no data" rather than raising on an empty frame).
"""

from __future__ import annotations

from typing import Any, Literal

import altair as alt
import numpy as np
import polars as pl

from workbench.charts._base import (
    HEIGHT,
    WIDTH,
    _finish,
    _finite,
    _group_color,
    _group_column,
    _measured,
    _no_data,
    _require,
)

_MAX_TIMELINE_POINTS = 4000
#: Cache outcomes answered from the cache (a replay, not generation): their rates are not streaming rates.
CACHE_HITS: tuple[str, ...] = ("exact", "semantic")

# ---- histograms ----


def _histogram_data(frame: pl.DataFrame, column: str, bins: int) -> pl.DataFrame:
    """Shared bin edges across groups, so the bars of different variants line up."""
    values = frame[column].to_numpy()
    edges = np.histogram_bin_edges(values, bins=bins)
    parts: list[dict[str, Any]] = []
    for (group,), sub in frame.group_by("__group", maintain_order=True):
        counts, _ = np.histogram(sub[column].to_numpy(), bins=edges)
        total = max(int(counts.sum()), 1)
        for k, n in enumerate(counts):
            parts.append(
                {
                    "group": str(group),
                    "start": float(edges[k]),
                    "end": float(edges[k + 1]),
                    "count": int(n),
                    "share": n / total,
                }
            )
    return pl.DataFrame(parts)


def _build_histogram(frame: pl.DataFrame, column: str, by: str | None, bins: int, unit_title: str) -> Any:
    frame, label = _group_column(frame, by, "variant", "histogram")
    frame = _finite(frame, column)
    if frame.is_empty():
        return None
    data = _histogram_data(frame, column, bins)
    medians = (
        frame.group_by("__group", maintain_order=True)
        .agg(pl.col(column).median().alias("median"), pl.len().alias("n"))
        .rename({"__group": "group"})
    )
    color = _group_color(label)
    bars = (
        alt.Chart(data)
        .mark_bar(opacity=0.55, binSpacing=0)
        .encode(
            x=alt.X("start:Q", bin="binned", title=unit_title),
            x2="end:Q",
            y=alt.Y("share:Q", stack=None, title="share of samples", axis=alt.Axis(format="%")),
            color=color,
            tooltip=[
                alt.Tooltip("group:N", title=label),
                alt.Tooltip("start:Q", format=".2f"),
                alt.Tooltip("end:Q", format=".2f"),
                "count:Q",
            ],
        )
    )
    rules = (
        alt.Chart(medians)
        .mark_rule(strokeDash=[4, 3], size=2)
        .encode(
            x="median:Q",
            color=color,
            tooltip=[alt.Tooltip("group:N", title=label), alt.Tooltip("median:Q", format=".2f"), "n:Q"],
        )
    )
    return alt.layer(bars, rules).properties(width=WIDTH, height=HEIGHT)


def latency_histogram(
    frame: pl.DataFrame,
    column: str,
    *,
    by: str | None = "variant",
    bins: int = 30,
    title: str | None = None,
) -> Any:
    """Histogram of any `*_ms` column per group (share of samples), dashed rule at each group's median."""
    name = title or f"{column} distribution"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, [column], "latency_histogram")
    chart = _build_histogram(_measured(frame), column, by, bins, column)
    return _finish(chart if chart is not None else _no_data(name), name, "dashed: median per group")


def ttft_histogram(frame: pl.DataFrame, by: str | None = "variant", *, bins: int = 30) -> Any:
    """Time to first token per group, from `to_frame` (ok, non-warm-up requests)."""
    return latency_histogram(frame, "ttft_ms", by=by, bins=bins, title="Time to first token (ms)")


def itl_histogram(itl_frame: pl.DataFrame, by: str | None = "variant", *, bins: int = 40) -> Any:
    """Inter-token latency, pooled over requests, from `itl_frame` (or `chunks_frame`; null gaps skipped)."""
    return latency_histogram(itl_frame, "itl_ms", by=by, bins=bins, title="Inter-token latency (ms)")


# ---- throughput ----


def _interval(values: np.ndarray[Any, Any], interval: str, level: float) -> tuple[float, float]:
    if values.size < 2:
        v = float(values[0]) if values.size else float("nan")
        return v, v
    if interval == "iqr":
        return float(np.percentile(values, 25)), float(np.percentile(values, 75))
    from workbench.metrics.summary import bootstrap_ci

    lo, hi = bootstrap_ci(values, stat="median", level=level)
    return float(lo), float(hi)


def _throughput_data(frame: pl.DataFrame, metric: str, interval: str, level: float) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for (group,), sub in frame.group_by("__group", maintain_order=True):
        values = sub[metric].to_numpy()
        lo, hi = _interval(values, interval, level)
        rows.append(
            {
                "group": str(group),
                "median": float(np.median(values)),
                "lo": lo,
                "hi": hi,
                "n": int(values.size),
            }
        )
    return pl.DataFrame(rows)


def has_cache_hits(frame: pl.DataFrame) -> bool:
    """True when some row of `frame` was answered from the cache (its `cache` column is a hit)."""
    return "cache" in frame.columns and bool(frame["cache"].cast(pl.String).is_in(list(CACHE_HITS)).any())


def _split_by_cache(frame: pl.DataFrame) -> pl.DataFrame:
    # Streamed requests (cache off, miss, bypass) and hits (replays) never share a group: a replay's
    # tokens/s or TPOT measures the replay, not generation, and pooling them makes a meaningless median.
    hit = pl.col("cache").cast(pl.String).is_in(list(CACHE_HITS))
    outcome = pl.when(hit).then(pl.lit(" · cache hit")).otherwise(pl.lit(" · streamed"))
    return frame.with_columns((pl.col("__group") + outcome).alias("__group"))


def _build_throughput(
    frame: pl.DataFrame,
    metric: str,
    by: str | None,
    interval: str,
    level: float,
    y_title: str,
    split_cache: bool = False,
) -> Any:
    frame, label = _group_column(_measured(frame), by, "variant", "throughput_by_variant")
    frame = _finite(frame, metric)
    if frame.is_empty():
        return None
    if split_cache and has_cache_hits(frame):
        frame = _split_by_cache(frame)
    data = _throughput_data(frame, metric, interval, level)
    # Cache replays reach absurd rates (no generation time): past a 50x spread, a log axis keeps the
    # other variants readable, and dots replace bars (a bar's length means nothing on a log axis).
    positive = data.filter(pl.col("lo") > 0)
    spread = 1.0
    if positive.height == data.height:
        spread = float(positive.select(pl.col("hi").max() / pl.col("lo").min()).item())
    log = spread > 50.0
    y = alt.Y(
        "median:Q",
        title=y_title + (" (log scale)" if log else ""),
        scale=alt.Scale(type="log") if log else alt.Undefined,
    )
    base = alt.Chart(data).encode(x=alt.X("group:N", title=label, sort=None, axis=alt.Axis(labelAngle=-20)))
    tips = [
        alt.Tooltip("group:N", title=label),
        alt.Tooltip("median:Q", format=".1f"),
        alt.Tooltip("lo:Q", format=".1f"),
        alt.Tooltip("hi:Q", format=".1f"),
        "n:Q",
    ]
    marks = base.mark_point(filled=True, size=90) if log else base.mark_bar(opacity=0.8)
    bars = marks.encode(y=y, color=alt.Color("group:N", legend=None), tooltip=tips)
    errors = base.mark_rule(size=2, color="black").encode(y="lo:Q", y2="hi:Q")
    return alt.layer(bars, errors).properties(width=WIDTH, height=HEIGHT)


def throughput_by_variant(
    frame: pl.DataFrame,
    by: str | None = "variant",
    *,
    metric: str = "tokens_per_s",
    interval: Literal["bootstrap", "iqr"] = "bootstrap",
    level: float = 0.95,
    split_cache: bool = True,
) -> Any:
    """Median tokens/s per variant; error bars: bootstrap CI of the median (or p25-p75 with `iqr`).

    `split_cache` (default): when the frame has cache hits, each group is split into "streamed" and "cache
    hit" (replays), so a replay's rate is never pooled with generation; the subtitle says so. False pools
    them (the subtitle then does not claim otherwise). `metric` may be
    any per-request rate or time (`tpot_ms` too).
    """
    name = "Throughput per variant (tokens/s)" if metric == "tokens_per_s" else f"{metric} per variant"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, [metric], "throughput_by_variant")
    chart = _build_throughput(frame, metric, by, interval, level, f"median {metric}", split_cache)
    bars = f"{level:.0%} bootstrap CI of the median" if interval == "bootstrap" else "p25-p75"
    sub = f"bars: {bars}"
    if split_cache and has_cache_hits(_measured(frame)):
        sub += "; cache hits (replays) apart from streamed requests"
    return _finish(chart if chart is not None else _no_data(name), name, sub)


# ---- per-token timeline ----


def _timeline_data(chunks: pl.DataFrame, max_streams: int) -> pl.DataFrame:
    ids = chunks["request_id"].unique(maintain_order=True).head(max_streams)
    data = (
        chunks.filter(pl.col("request_id").is_in(ids.implode()))
        .sort("request_id", "i" if "i" in chunks.columns else "t_ms")
        .with_columns(pl.col("text_len").cum_sum().over("request_id").alias("chars"))
    )
    if data.height > _MAX_TIMELINE_POINTS:
        # Keep every stream's first and last point so the curves still start and end right.
        step = data.height // _MAX_TIMELINE_POINTS + 1
        k = pl.int_range(pl.len()).over("request_id")
        n = pl.len().over("request_id")
        data = data.filter((k % step == 0) | (k == n - 1))
    return data


def _build_timeline(chunks: pl.DataFrame, max_streams: int, color_by: str | None) -> Any:
    data = _finite(chunks, "t_ms")
    if data.is_empty():
        return None
    data = _timeline_data(data, max_streams)
    keep = ["request_id", "t_ms", "chars", "text_len"]
    if color_by and color_by in data.columns and color_by != "request_id":
        data = data.with_columns(pl.col(color_by).cast(pl.String).fill_null("(none)"))
        keep.append(color_by)
        color = alt.Color(f"{color_by}:N", title=color_by)
    else:
        color = alt.Color("request_id:N", title="request")
    return (
        alt.Chart(data.select(keep))
        .mark_line(interpolate="step-after", point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("t_ms:Q", title="time since send (ms)"),
            y=alt.Y("chars:Q", title="characters received"),
            color=color,
            detail="request_id:N",
            tooltip=["request_id:N", alt.Tooltip("t_ms:Q", format=".1f"), "chars:Q", "text_len:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


def token_timeline(
    chunks_frame: pl.DataFrame, *, max_streams: int = 8, color_by: str | None = "variant"
) -> Any:
    """Characters received against arrival time for each stream (one step per chunk)."""
    name = "Token arrival timeline"
    if chunks_frame.is_empty():
        return _finish(_no_data(name), name)
    _require(chunks_frame, ["request_id", "t_ms", "text_len"], "token_timeline")
    if color_by == "variant" and (
        "variant" not in chunks_frame.columns or chunks_frame["variant"].null_count() == chunks_frame.height
    ):
        color_by = None
    chart = _build_timeline(chunks_frame, max_streams, color_by)
    n = chunks_frame["request_id"].n_unique()
    sub = f"{min(n, max_streams)} of {n} streams" if n > max_streams else f"{n} stream(s)"
    return _finish(chart if chart is not None else _no_data(name), name, sub)


# ---- ground truth ----


def client_overhead(
    frame: pl.DataFrame,
    *,
    client_col: str = "client_ms",
    server_col: str = "server_ms",
    by: str | None = "variant",
    bins: int = 30,
) -> Any:
    """Client-measured arrival minus the simulator's emit time, per chunk, where ground truth exists.

    Both columns are ms on the same clock (perf_counter in one process); rows with either missing are
    skipped. The gap is what the network stack, parsing and the event loop add to what we report.
    """
    name = "Client-side delay over server emit time (ms)"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, [client_col, server_col], "client_overhead")
    lag = frame.with_columns((pl.col(client_col) - pl.col(server_col)).alias("lag_ms"))
    chart = _build_histogram(lag, "lag_ms", by, bins, "client arrival − server emit (ms)")
    if chart is None:
        return _finish(_no_data(name, "no ground truth"), name)
    med = float(_finite(lag, "lag_ms")["lag_ms"].median())  # type: ignore[arg-type]
    return _finish(chart, name, f"median {med:.3f} ms over {lag['lag_ms'].drop_nulls().len()} chunks")
