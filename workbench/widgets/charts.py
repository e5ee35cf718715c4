"""Altair charts from workbench's polars frames, usable in any cell and exportable offline.

Each public function takes a frame (`workbench.metrics.to_frame`, `chunks_frame`, `itl_frame`, or a stats
frame from `workbench.experiments` / `workbench.cache.audit`) and returns a finished, themed chart. The data
is aggregated in polars first (histogram bins, medians, shares), so a chart carries tens of rows instead of
every sample: that keeps notebooks small, avoids Altair's 5000-row limit and makes live updates cheap.

An empty frame, or one whose values are all missing, gives a chart that says "no data" rather than raising.
Export with `save_chart(chart, "x.svg" | "x.png" | "x.html" | "x.pdf" | "x.json")`, `to_svg`, `to_png`, or
`static(chart)` for an IPython display object; all go through vl-convert, so none needs a network.
"""

from __future__ import annotations

from typing import Any, Literal

import altair as alt
import numpy as np
import polars as pl

from workbench.widgets._chart_base import (
    CACHE_COLORS,
    HEIGHT,
    WIDTH,
    _finish,
    _finite,
    _group_color,
    _group_column,
    _measured,
    _no_data,
    _require,
    _rows,
    save_chart,
    static,
    theme_config,
    to_png,
    to_svg,
)

__all__ = [
    "CACHE_COLORS",
    "WIDTH",
    "ablation_chart",
    "audit_chart",
    "cache_hit_rate_over_time",
    "client_overhead",
    "concurrency_sweep_chart",
    "itl_histogram",
    "latency_histogram",
    "save_chart",
    "static",
    "theme_config",
    "throughput_by_variant",
    "to_png",
    "to_svg",
    "token_timeline",
    "ttft_histogram",
]

_MAX_TIMELINE_POINTS = 4000

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


# ---- cache ----


def _cache_share_data(frame: pl.DataFrame, bins: int) -> pl.DataFrame:
    frame = frame.filter(pl.col("cache").is_not_null())
    if "sent_ns" in frame.columns and frame["sent_ns"].null_count() == 0:
        frame = frame.sort("sent_ns")
        x = (pl.col("sent_ns") - pl.col("sent_ns").min()).cast(pl.Float64) / 1e9
    else:
        x = pl.int_range(pl.len()).cast(pl.Float64)
    frame = frame.with_columns(x.alias("__x"))
    span = float(frame["__x"].max() or 0.0)  # type: ignore[arg-type]
    width = span / bins if span > 0 else 1.0
    binned = frame.with_columns((pl.col("__x") / width).floor().clip(0, bins - 1).alias("__bin"))
    counts = binned.group_by("__bin", "cache").agg(pl.len().alias("n"))
    totals = counts.group_by("__bin").agg(pl.col("n").sum().alias("total"))
    return (
        counts.join(totals, on="__bin")
        .with_columns(
            (pl.col("n") / pl.col("total")).alias("share"),
            (pl.col("__bin") * width).alias("start"),
            ((pl.col("__bin") + 1) * width).alias("end"),
        )
        .select("start", "end", "cache", "n", "total", "share")
        .sort("start", "cache")
    )


def _build_cache_share(frame: pl.DataFrame, bins: int, x_title: str) -> Any:
    data = _cache_share_data(frame, bins)
    if data.is_empty():
        return None
    kinds = [k for k in CACHE_COLORS if k in set(data["cache"].to_list())]
    kinds += sorted(set(data["cache"].to_list()) - set(kinds))
    palette = [CACHE_COLORS.get(k, "#8c564b") for k in kinds]
    return (
        alt.Chart(data)
        .mark_bar(binSpacing=1)
        .encode(
            x=alt.X("start:Q", bin="binned", title=x_title),
            x2="end:Q",
            y=alt.Y("share:Q", stack="zero", title="share of requests", axis=alt.Axis(format="%")),
            color=alt.Color("cache:N", title="cache", scale=alt.Scale(domain=kinds, range=palette)),
            order=alt.Order("cache:N"),
            tooltip=["cache:N", alt.Tooltip("share:Q", format=".0%"), "n:Q", "total:Q"],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


def cache_hit_rate_over_time(frame: pl.DataFrame, *, bins: int = 20) -> Any:
    """Share of miss / exact / semantic / bypass per time bin (seconds since the first request was sent)."""
    name = "Cache outcomes over time"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, ["cache"], "cache_hit_rate_over_time")
    timed = "sent_ns" in frame.columns and frame["sent_ns"].null_count() == 0
    chart = _build_cache_share(frame, bins, "time since first request (s)" if timed else "request #")
    hits = frame.filter(pl.col("cache").is_in(["exact", "semantic"])).height
    sub = f"overall hit rate {hits / frame.height:.0%} of {frame.height} requests"
    return _finish(chart if chart is not None else _no_data(name), name, sub)


# ---- throughput ----


def _interval(values: np.ndarray[Any, Any], interval: str, level: float) -> tuple[float, float]:
    if values.size < 2:
        v = float(values[0]) if values.size else float("nan")
        return v, v
    if interval == "iqr":
        return float(np.percentile(values, 25)), float(np.percentile(values, 75))
    from workbench.metrics.stats import bootstrap_ci

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


def _build_throughput(
    frame: pl.DataFrame, metric: str, by: str | None, interval: str, level: float, y_title: str
) -> Any:
    frame, label = _group_column(_measured(frame), by, "variant", "throughput_by_variant")
    frame = _finite(frame, metric)
    if frame.is_empty():
        return None
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
) -> Any:
    """Median tokens/s per variant; error bars: bootstrap CI of the median (or p25-p75 with `iqr`)."""
    name = "Throughput per variant (tokens/s)"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, [metric], "throughput_by_variant")
    chart = _build_throughput(frame, metric, by, interval, level, f"median {metric}")
    bars = f"{level:.0%} bootstrap CI of the median" if interval == "bootstrap" else "p25-p75"
    return _finish(chart if chart is not None else _no_data(name), name, f"bars: {bars}")


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


# ---- experiment statistics ----


def ablation_chart(summary_frame: pl.DataFrame, *, stat: str = "median", log_scale: bool = True) -> Any:
    """Each variant's effect against the baseline with CI bars.

    Takes either `workbench.experiments` comparisons (variant, metric, stat, factor, ci_lo, ci_hi: an
    improvement factor, > 1 always better; rows of `stat` only) or a plain ratio frame (variant, metric,
    ratio, lo, hi: read the direction per metric). The dashed rule marks "no change".
    """
    name = "Effect of each toggle against the baseline"
    if summary_frame.is_empty():
        return _finish(_no_data(name), name)
    frame = summary_frame
    improvement = "factor" in frame.columns and "ratio" not in frame.columns
    if improvement:
        _require(frame, ["variant", "metric", "factor", "ci_lo", "ci_hi"], "ablation_chart")
        if "stat" in frame.columns:
            frame = frame.filter(pl.col("stat") == stat)
        frame = frame.rename({"factor": "ratio", "ci_lo": "lo", "ci_hi": "hi"})
    _require(frame, ["variant", "metric", "ratio", "lo", "hi"], "ablation_chart")
    data = _finite(frame.select("variant", "metric", "ratio", "lo", "hi"), "ratio")
    if data.is_empty():
        return _finish(_no_data(name), name)
    x_title = f"improvement factor of the {stat} (> 1 = better)" if improvement else "ratio to baseline"
    data = data.with_columns(pl.col("variant").cast(pl.String), pl.col("metric").cast(pl.String))
    # all-on first, then each toggle's "+name" (on alone) next to its "-name" (off alone).
    order = sorted(
        data["variant"].unique(maintain_order=True).to_list(),
        key=lambda v: (v != "all-on", v.lstrip("+-"), v),
    )
    lo_all = min(float(data["lo"].min()), 1.0)  # type: ignore[arg-type]
    hi_all = max(float(data["hi"].max()), 1.0)  # type: ignore[arg-type]
    if log_scale and lo_all > 0:
        scale = alt.Scale(type="log", domain=[lo_all / 1.05, hi_all * 1.05], nice=False)
    else:
        pad = (hi_all - lo_all) * 0.05 or 0.05
        scale = alt.Scale(domain=[lo_all - pad, hi_all + pad], nice=False)
    base = alt.Chart(data).encode(
        y=alt.Y("variant:N", sort=order, title=None),
        yOffset=alt.YOffset("metric:N"),
        color=alt.Color("metric:N", title="metric"),
    )
    ci = base.mark_rule(size=2).encode(x=alt.X("lo:Q", scale=scale, title=x_title), x2="hi:Q")
    dots = base.mark_point(filled=True, size=60).encode(
        x="ratio:Q",
        tooltip=[
            "variant:N",
            "metric:N",
            alt.Tooltip("ratio:Q", format=".3f"),
            alt.Tooltip("lo:Q", format=".3f"),
            alt.Tooltip("hi:Q", format=".3f"),
        ],
    )
    one = alt.Chart(_rows([{"x": 1.0}])).mark_rule(color="#444", strokeDash=[3, 3]).encode(x="x:Q")
    height = max(HEIGHT, 28 * len(order) * max(1, data["metric"].n_unique()) // 2)
    chart = alt.layer(one, ci, dots).properties(width=WIDTH, height=height)
    return _finish(chart, name, "dot: ratio of the statistic; bar: bootstrap CI; dashed: no change")


def audit_chart(audit_frame: pl.DataFrame, *, chosen: float | None = None) -> Any:
    """Semantic-cache hit rate and false-hit rate per similarity threshold, with CI bands.

    Columns: threshold (or min_cosine, as `workbench.cache.audit` names it), hit_rate, false_hit_rate and
    optionally hit_rate_lo/_hi, false_hit_rate_lo/_hi.
    `chosen` draws a rule at the threshold picked for use.
    """
    name = "Semantic cache: hit rate vs false-hit rate"
    if audit_frame.is_empty():
        return _finish(_no_data(name), name)
    if "threshold" not in audit_frame.columns and "min_cosine" in audit_frame.columns:
        audit_frame = audit_frame.rename({"min_cosine": "threshold"})  # workbench.cache.audit's name
    _require(audit_frame, ["threshold", "hit_rate", "false_hit_rate"], "audit_chart")
    parts = []
    for rate in ("hit_rate", "false_hit_rate"):
        lo = pl.col(f"{rate}_lo") if f"{rate}_lo" in audit_frame.columns else pl.col(rate)
        hi = pl.col(f"{rate}_hi") if f"{rate}_hi" in audit_frame.columns else pl.col(rate)
        parts.append(
            audit_frame.select(
                pl.col("threshold").cast(pl.Float64),
                pl.lit(rate.replace("_", " ")).alias("rate"),
                pl.col(rate).cast(pl.Float64).alias("value"),
                lo.cast(pl.Float64).alias("lo"),
                hi.cast(pl.Float64).alias("hi"),
            )
        )
    data = _finite(pl.concat(parts), "value")
    if data.is_empty():
        return _finish(_no_data(name), name)
    colors = alt.Color(
        "rate:N",
        title=None,
        scale=alt.Scale(domain=["hit rate", "false hit rate"], range=["#2ca02c", "#d62728"]),
    )
    x = alt.X("threshold:Q", title="cosine similarity threshold", scale=alt.Scale(zero=False))
    band = alt.Chart(data).mark_area(opacity=0.18).encode(x=x, y="lo:Q", y2="hi:Q", color=colors)
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title="share of lookups", axis=alt.Axis(format="%")),
            color=colors,
            tooltip=[
                "threshold:Q",
                "rate:N",
                alt.Tooltip("value:Q", format=".1%"),
                alt.Tooltip("lo:Q", format=".1%"),
                alt.Tooltip("hi:Q", format=".1%"),
            ],
        )
    )
    layers = [band, line]
    if chosen is not None:
        layers.append(
            alt.Chart(_rows([{"t": chosen}])).mark_rule(strokeDash=[4, 3], color="#444").encode(x="t:Q")
        )
    sub = "bands: confidence interval" + (
        f"; dashed: chosen threshold {chosen:g}" if chosen is not None else ""
    )
    return _finish(alt.layer(*layers).properties(width=WIDTH, height=HEIGHT), name, sub)


def concurrency_sweep_chart(
    frame: pl.DataFrame,
    *,
    offered: str = "offered_tokens_per_s",
    delivered: str = "delivered_tokens_per_s",
    label: str | None = "concurrency",
    by: str | None = "variant",
) -> Any:
    """Delivered against offered throughput (tokens/s); the dashed diagonal is "everything delivered"."""
    name = "Concurrency sweep: delivered vs offered (tokens/s)"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, [offered, delivered], "concurrency_sweep_chart")
    data, group = _group_column(frame, by, "variant", "concurrency_sweep_chart")
    data = _finite(_finite(data, offered), delivered)
    if data.is_empty():
        return _finish(_no_data(name), name)
    keep = [offered, delivered, "__group"] + ([label] if label and label in data.columns else [])
    data = data.select(keep).rename({"__group": "group"}).sort(offered)
    top = max(float(data[offered].max()), float(data[delivered].max()))  # type: ignore[arg-type]
    diag = (
        alt.Chart(_rows([{"v": 0.0}, {"v": top}]))
        .mark_line(strokeDash=[4, 3], color="#999")
        .encode(x="v:Q", y="v:Q")
    )
    tips = [alt.Tooltip(f"{offered}:Q", format=".1f"), alt.Tooltip(f"{delivered}:Q", format=".1f"), "group:N"]
    if label in keep:
        tips.append(f"{label}:Q")
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{offered}:Q", title="offered (tokens/s)"),
            y=alt.Y(f"{delivered}:Q", title="delivered (tokens/s)"),
            color=_group_color(group),
            tooltip=tips,
        )
    )
    layers = [diag, line]
    if label in keep:
        layers.append(line.mark_text(dy=-9, fontSize=10).encode(text=f"{label}:Q"))
    return _finish(
        alt.layer(*layers).properties(width=WIDTH, height=HEIGHT),
        name,
        f"labels: {label}" if label in keep else None,
    )
