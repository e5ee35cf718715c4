"""Sweep charts: TTFT p50/p99 and the client's share per load level (delivered vs offered lives in
experiment_stats.concurrency_sweep_chart). Input: `workbench.experiments.sweep.sweep_frame`."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from workbench.charts._base import HEIGHT, WIDTH, _curve, _finish, _no_data, _require

__all__ = ["sweep_latency_chart"]


def sweep_latency_chart(frame: pl.DataFrame, *, level_title: str = "level", share_limit: float = 0.2) -> Any:
    """Left: TTFT p50 and p99 (ms, log scale) per level; right: client share (loop lag / ITL) per level,
    with the client-limited line. Levels on a log axis, since sweeps usually step by multiples."""
    name = f"Sweep: TTFT and client share by {level_title}"
    if frame.is_empty():
        return _finish(_no_data(name), name)
    _require(frame, ["level", "variant", "ttft_p50_ms", "ttft_p99_ms", "client_share"], "sweep_latency_chart")
    long = frame.unpivot(
        index=["level", "variant"], on=["ttft_p50_ms", "ttft_p99_ms"], variable_name="stat", value_name="ms"
    ).filter(pl.col("ms").is_finite() & (pl.col("ms") > 0))
    x = alt.X("level:Q", title=level_title, scale=alt.Scale(type="log"))
    ttft = _curve(
        long,
        x=x,
        y=alt.Y("ms:Q", title="TTFT (ms)", scale=alt.Scale(type="log")),
        color=alt.Color("variant:N"),
        strokeDash=alt.StrokeDash("stat:N", title="statistic"),
        tooltip=["level:Q", "variant:N", "stat:N", alt.Tooltip("ms:Q", format=".1f")],
    ).properties(width=WIDTH // 2, height=HEIGHT)
    shares = frame.select("level", "variant", "client_share").filter(pl.col("client_share").is_finite())
    share = _curve(
        shares,
        x=x,
        y=alt.Y("client_share:Q", title="client share (loop lag / ITL)", axis=alt.Axis(format="%")),
        color=alt.Color("variant:N"),
        tooltip=["level:Q", "variant:N", alt.Tooltip("client_share:Q", format=".1%")],
    )
    limit = (
        alt.Chart(pl.DataFrame({"y": [share_limit]}))
        .mark_rule(strokeDash=[4, 3], color="#c33")
        .encode(y="y:Q")
    )
    right = alt.layer(share, limit).properties(width=WIDTH // 2, height=HEIGHT)
    return _finish(alt.hconcat(ttft, right), name, "dashed red: client-limited above this share")
