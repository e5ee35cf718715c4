"""Altair charts from workbench's polars frames, usable in any cell and exportable offline.

Each public function takes a frame (`workbench.metrics.to_frame`, `chunks_frame`, `itl_frame`, or a stats
frame from `workbench.experiments` / `workbench.cache.audit`) and returns a finished, themed chart. The data
is aggregated in polars first (histogram bins, medians, shares), so a chart carries tens of rows instead of
every sample: that keeps notebooks small, avoids Altair's 5000-row limit and makes live updates cheap.

An empty frame, or one whose values are all missing, gives a chart that says "no data" rather than raising.
Export with `save_chart(chart, "x.svg" | "x.png" | "x.html" | "x.pdf" | "x.json")`, `to_svg`, `to_png`, or
`static(chart)` for an IPython display object; all go through vl-convert, so none needs a network.

Split by what the charts show: `timing` (TTFT/ITL, throughput, token timeline, client lag), `cache_hits`
(cache outcomes, threshold audit), `experiment_stats` (ablation, concurrency sweep); `_base` holds the theme,
frame checks and export. The live 2x2 grid widget is `workbench.widgets.LiveCharts`.
"""

from workbench.charts._base import CACHE_COLORS, WIDTH, save_chart, static, theme_config, to_png, to_svg
from workbench.charts.cache_hits import audit_chart, cache_hit_rate_over_time
from workbench.charts.experiment_stats import ablation_chart, concurrency_sweep_chart
from workbench.charts.timing import (
    client_overhead,
    itl_histogram,
    latency_histogram,
    throughput_by_variant,
    token_timeline,
    ttft_histogram,
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
