"""Charts that follow a run while it goes on, without re-sending every sample each time.

`LiveCharts` shows one `alt.JupyterChart` (a 2x2 grid: TTFT histogram, throughput per variant, cache
outcomes over time, token timeline). Each `update(frame)` re-aggregates in polars, so what crosses to the
browser is a few dozen rows (histogram bins, medians, shares), never the raw samples; updates are rate-limited
(at most 2 per second, and never more than ~10% of a core: the gap grows with what an update costs; the last
state of a burst is always sent) and skipped when the aggregate did not change.

One grid in one widget, rather than four widgets, because offline mode embeds the ~0.9 MB vega bundle in
each JupyterChart's state: one copy per LiveCharts keeps saved notebooks small. Offline mode is on by default
(the JS comes from vl-convert, no CDN), so the charts render with no network.

For exported notebooks (nbconvert HTML shows no widget) call `static()`, which renders the same grid with
vl-convert as SVG or PNG.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import altair as alt
import polars as pl

from workbench import charts as _c

__all__ = ["PANELS", "LiveCharts", "enable_offline"]

PANELS: tuple[str, ...] = ("ttft", "throughput", "cache", "timeline")
_PANEL_W = 300
_PANEL_H = 150
_offline_lock = threading.Lock()


def enable_offline() -> None:
    """Load vega/vega-lite/vega-embed for JupyterChart from vl-convert instead of a CDN (once per kernel)."""
    with _offline_lock:
        alt.JupyterChart.enable_offline()


def _panel(chart: Any) -> Any:
    # Concatenated charts may not carry their own config; the grid gets the shared one once.
    chart = chart.properties(width=_PANEL_W, height=_PANEL_H)
    chart.config = alt.Undefined
    return chart


class LiveCharts:
    """A live 2x2 grid of run charts fed with `update(results_frame, chunks_frame=None)`.

    `results_frame` is `workbench.metrics.to_frame(...)` (or `RunResult.frame`); `chunks_frame` is
    `workbench.metrics.chunks_frame(...)` for the token timeline. Safe to call from a worker thread.
    """

    def __init__(
        self,
        *,
        panels: Sequence[str] = PANELS,
        by: str | None = "variant",
        max_hz: float = 2.0,
        offline: bool = True,
        interval: Literal["bootstrap", "iqr"] = "iqr",
    ) -> None:
        unknown = [p for p in panels if p not in PANELS]
        if unknown:
            raise ValueError(f"unknown panel(s) {unknown}; choose from {list(PANELS)}")
        if max_hz <= 0:
            raise ValueError("max_hz must be > 0")
        self.panels = tuple(panels)
        self.by = by
        # IQR by default while live: a bootstrap per update would cost CPU the run is trying to measure.
        self.interval = interval
        self.min_gap_s = 1.0 / max_hz
        self._lock = threading.Lock()
        self._frame = pl.DataFrame()
        self._chunks = pl.DataFrame()
        self._last_sent = float("-inf")
        self._last_key = ""
        self._timer: threading.Timer | None = None
        self._cost_s = 0.0  # seconds the last update took (compose + serialise + send)
        self.updates_sent = 0
        self.bytes_sent = 0
        if offline:
            enable_offline()
        self._current = self._compose()
        self._last_key = self._key(self._current)
        self.widget: Any = alt.JupyterChart(self._current)

    # ---- building ----

    def _panel_chart(self, name: str) -> Any:
        frame, chunks = self._frame, self._chunks
        if name == "ttft":
            return _c.ttft_histogram(frame, by=self.by, bins=20)
        if name == "throughput":
            return _c.throughput_by_variant(frame, by=self.by, interval=self.interval, split_cache=True)
        if name == "cache":
            return _c.cache_hit_rate_over_time(frame, bins=12)
        return _c.token_timeline(chunks, max_streams=6)

    def chart(self) -> Any:
        """The current grid as a finished Altair chart (for `save_chart` or composition)."""
        with self._lock:
            return self._compose()

    def _compose(self) -> Any:
        panels = [_panel(self._panel_chart(name)) for name in self.panels]
        rows = [
            alt.hconcat(*panels[i : i + 2])
            .resolve_scale(color="independent")
            .resolve_legend(color="independent")
            for i in range(0, len(panels), 2)
        ]
        grid = alt.vconcat(*rows) if len(rows) > 1 else rows[0]
        # Concatenated views share colour scales by default; the cache panel's fixed palette would then
        # leave the variant colours undefined (invisible marks).
        grid = grid.resolve_scale(color="independent").resolve_legend(color="independent")
        grid.config = alt.Config(**_c.theme_config())
        return grid

    @staticmethod
    def _key(chart: Any) -> str:
        # The widget validates when it serialises; validating twice per update would double the cost.
        return json.dumps(chart.to_dict(validate=False), sort_keys=True, default=str)

    # ---- updating ----

    def update(
        self, results_frame: pl.DataFrame, chunks_frame: pl.DataFrame | None = None, *, force: bool = False
    ) -> bool:
        """Take the latest frames; send a new grid now if the rate limit allows, else soon after.

        Returns True when this call sent an update to the browser.
        """
        with self._lock:
            self._frame = results_frame
            if chunks_frame is not None:
                self._chunks = chunks_frame
            # Never spend more than ~10% of a core on charts: the run being measured shares this process.
            gap = max(self.min_gap_s, 10.0 * self._cost_s)
            wait = self._last_sent + gap - time.monotonic()
            if wait > 0 and not force:
                if self._timer is None:
                    # Trailing edge: the last state of a burst is always shown.
                    self._timer = threading.Timer(wait, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return False
            return self._send()

    def flush(self) -> bool:
        """Send the latest state now, whatever the rate limit. Returns True when something changed."""
        with self._lock:
            return self._send()

    def _send(self) -> bool:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        started = time.monotonic()
        self._last_sent = started
        chart = self._compose()
        key = self._key(chart)
        changed = key != self._last_key
        if changed:
            self._current, self._last_key = chart, key
            self.widget.chart = chart
            self.updates_sent += 1
            self.bytes_sent += len(key)
        self._cost_s = time.monotonic() - started
        return changed

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.widget.close()

    # ---- display ----

    def static(self, fmt: Literal["svg", "png"] = "svg", *, scale: float = 1.5) -> Any:
        """The current grid rendered by vl-convert, for exported notebooks and reports."""
        return _c.static(self.chart(), fmt, scale=scale)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # The live chart plus an SVG of the current grid: what an exported notebook shows (no widget there).
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data, meta = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        try:
            svg = _c.to_svg(self.chart())
        except Exception:  # no vl-convert: the live chart still shows
            return bundle
        return {**data, "image/svg+xml": svg}, meta
