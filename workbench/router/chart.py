"""Chart of the router's tier shares, in the style of `workbench.charts` (same theme, title and width).

Only the public `theme_config` and `WIDTH` are shared, so the chart does not lean on the charts package's
private helpers."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from workbench.charts import WIDTH, theme_config

__all__ = ["tier_share_chart"]


def tier_share_chart(frame: pl.DataFrame, *, by: str | None = None, title: str | None = None) -> Any:
    """Share of requests per tier, one stacked bar per group of `by` (e.g. "variant", "category"), or one
    bar for the whole frame. Needs a `tier` column; a `route_fast_path` column, when present, is counted into
    the tooltip (how many of each tier the security fast path decided). Aggregated in polars first, so the
    chart carries one row per (group, tier)."""
    need = ["tier"] if by is None else ["tier", by]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(
            f"tier_share_chart needs columns {need}; the frame lacks {missing} (it has {frame.columns})"
        )
    name = title or "Requests per tier"
    frame = frame.filter(pl.col("tier").is_not_null())
    if frame.is_empty():
        empty = alt.Chart(pl.DataFrame({"msg": ["no data"]})).mark_text(size=16, color="#888")
        empty = empty.encode(text="msg:N")
        return _finish(empty.properties(width=WIDTH, height=60), name, None)
    label = by or "all"
    group = pl.col(by).cast(pl.String).fill_null("(none)") if by else pl.lit("all")
    frame = frame.with_columns(group.alias("__group"))
    fast = (
        pl.col("route_fast_path").cast(pl.Int64).fill_null(0).sum()
        if "route_fast_path" in frame.columns
        else pl.lit(0, dtype=pl.Int64)
    )
    data = (
        frame.with_columns(pl.col("tier").cast(pl.String))
        .group_by("__group", "tier", maintain_order=True)
        .agg(pl.len().alias("n"), fast.alias("fast_path_n"))
        .with_columns((pl.col("n") / pl.col("n").sum().over("__group")).alias("share"))
        .rename({"__group": "group"})
        .sort("group", "tier")
    )
    groups = data["group"].unique(maintain_order=True).len()
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None if label == "all" else label, sort=None),
            x=alt.X("share:Q", stack="normalize", title="share of requests", axis=alt.Axis(format="%")),
            color=alt.Color("tier:N", title="tier", sort="ascending"),
            order=alt.Order("tier:N", sort="ascending"),
            tooltip=[
                alt.Tooltip("group:N", title=label),
                "tier:N",
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("n:Q", title="requests"),
                alt.Tooltip("fast_path_n:Q", title="via fast path"),
            ],
        )
        .properties(width=WIDTH, height=max(40, 28 * groups))
    )
    total = int(data["n"].sum())
    return _finish(chart, name, f"{total} routed requests")


def _finish(chart: Any, title: str, subtitle: str | None) -> Any:
    """The title (and subtitle, if any) and the charts' theme, as every workbench chart has them."""
    heading = alt.TitleParams(title, subtitle=subtitle) if subtitle else alt.TitleParams(title)
    return chart.properties(title=heading).configure(**theme_config())
