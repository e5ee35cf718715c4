"""Experiment-statistics charts: each variant's effect against the baseline (ablation), concurrency sweeps."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from workbench.charts._base import (
    HEIGHT,
    WIDTH,
    _ci_tooltips,
    _curve,
    _finish,
    _finite,
    _group_color,
    _group_column,
    _no_data,
    _require,
    _rows,
)

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
        tooltip=["variant:N", "metric:N", *_ci_tooltips("ratio", ".3f")],
    )
    one = alt.Chart(_rows([{"x": 1.0}])).mark_rule(color="#444", strokeDash=[3, 3]).encode(x="x:Q")
    height = max(HEIGHT, 28 * len(order) * max(1, data["metric"].n_unique()) // 2)
    chart = alt.layer(one, ci, dots).properties(width=WIDTH, height=height)
    return _finish(chart, name, "dot: ratio of the statistic; bar: bootstrap CI; dashed: no change")


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
    line = _curve(
        data,
        x=alt.X(f"{offered}:Q", title="offered (tokens/s)"),
        y=alt.Y(f"{delivered}:Q", title="delivered (tokens/s)"),
        color=_group_color(group),
        tooltip=tips,
    )
    layers = [diag, line]
    if label in keep:
        layers.append(line.mark_text(dy=-9, fontSize=10).encode(text=f"{label}:Q"))
    return _finish(
        alt.layer(*layers).properties(width=WIDTH, height=HEIGHT),
        name,
        f"labels: {label}" if label in keep else None,
    )
