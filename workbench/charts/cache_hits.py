"""Cache charts: the share of answers per cache outcome over a run, and the semantic-cache threshold audit."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from workbench.charts._base import (
    CACHE_COLORS,
    HEIGHT,
    WIDTH,
    _ci_tooltips,
    _curve,
    _finish,
    _finite,
    _no_data,
    _require,
    _rows,
)

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
    line = _curve(
        data,
        x=x,
        y=alt.Y("value:Q", title="share of lookups", axis=alt.Axis(format="%")),
        color=colors,
        tooltip=["threshold:Q", "rate:N", *_ci_tooltips("value", ".1%")],
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
