"""Shared pieces of the workbench charts: theme, frame checks, the "no data" chart, vl-convert export."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import altair as alt
import polars as pl

__all__ = ["CACHE_COLORS", "HEIGHT", "WIDTH", "save_chart", "static", "theme_config", "to_png", "to_svg"]

WIDTH = 420
HEIGHT = 220
# Fixed colours per cache outcome, so every chart and every notebook reads the same way.
CACHE_COLORS: dict[str, str] = {
    "miss": "#9e9e9e",
    "exact": "#1f77b4",
    "semantic": "#2ca02c",
    "bypass": "#ff7f0e",
    "off": "#d9d9d9",
}
_ALL = "all"


def theme_config() -> dict[str, Any]:
    """The Vega-Lite config every workbench chart carries (set on the chart, not as a global theme)."""
    return {
        "font": "DejaVu Sans, Helvetica, Arial, sans-serif",
        "title": {"fontSize": 14, "anchor": "start", "subtitleFontSize": 11, "subtitleColor": "#555"},
        "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#eee"},
        "legend": {"labelFontSize": 11, "titleFontSize": 11},
        "view": {"stroke": None},
        "range": {"category": {"scheme": "tableau10"}},
    }


def _finish(chart: Any, title: str, subtitle: str | None = None) -> Any:
    """Title + shared config. Sub-charts for composition (LiveCharts) use the `_build_*` functions instead."""
    t: dict[str, Any] = {"text": title}
    if subtitle:
        t["subtitle"] = subtitle
    out = chart.properties(title=t)
    out.config = alt.Config(**theme_config())
    return out


def _rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows)


def _no_data(title: str, reason: str = "no data") -> Any:
    return (
        alt.Chart(_rows([{"msg": reason}]))
        .mark_text(size=16, color="#888")
        .encode(text="msg:N")
        .properties(width=WIDTH, height=HEIGHT)
    )


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {list(columns)}; the frame lacks {missing} (it has {frame.columns})"
        )


def _group_column(frame: pl.DataFrame, by: str | None, default: str, what: str) -> tuple[pl.DataFrame, str]:
    """Return the frame with a string `__group` column. A missing default `by` means one group ("all")."""
    if by is None or (by == default and by not in frame.columns):
        return frame.with_columns(pl.lit(_ALL).alias("__group")), _ALL
    _require(frame, [by], what)
    return frame.with_columns(pl.col(by).cast(pl.String).fill_null("(none)").alias("__group")), by


def _group_color(label: str) -> Any:
    if label == _ALL:
        return alt.Color("group:N", legend=None)
    return alt.Color("group:N", title=label)


def _measured(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows that count in a summary: ok requests, warm-up excluded (DESIGN.md metric rules)."""
    if "status" in frame.columns:
        frame = frame.filter(pl.col("status") == "ok")
    if "warmup" in frame.columns and frame.schema["warmup"] == pl.Boolean:
        frame = frame.filter(~pl.col("warmup").fill_null(False))
    return frame


def _curve(data: pl.DataFrame, **encodings: Any) -> Any:
    """A line with a dot at each point: curves over a few uneven x values (levels, thresholds, rates)."""
    return alt.Chart(data).mark_line(point=True).encode(**encodings)


def _ci_tooltips(value: str, fmt: str) -> list[Any]:
    """Tooltips for a value and its confidence interval (the `lo` and `hi` columns), all in one format."""
    return [alt.Tooltip(f"{c}:Q", format=fmt) for c in (value, "lo", "hi")]


def _finite(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    col = pl.col(column).cast(pl.Float64)
    return frame.with_columns(col.alias(column)).filter(col.is_not_null() & col.is_finite())


# ---- export (vl-convert: no browser, no network) ----


def _spec(chart: Any) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)
    return spec


def _vl_version() -> str:
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor


def to_svg(chart: Any) -> str:
    """The chart as an SVG document (text)."""
    import vl_convert as vlc

    svg: str = vlc.vegalite_to_svg(_spec(chart), vl_version=_vl_version())
    return svg


def to_png(chart: Any, *, scale: float = 2.0) -> bytes:
    """The chart as PNG bytes (`scale` 2 is crisp on high-density screens)."""
    import vl_convert as vlc

    png: bytes = vlc.vegalite_to_png(_spec(chart), vl_version=_vl_version(), scale=scale)
    return png


def save_chart(chart: Any, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write the chart by file suffix: .svg, .png, .pdf, .html (self-contained, JS inlined) or .json."""
    import vl_convert as vlc

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    writers: dict[str, Callable[[], str | bytes]] = {
        ".svg": lambda: to_svg(chart),
        ".png": lambda: to_png(chart, scale=scale),
        ".pdf": lambda: vlc.vegalite_to_pdf(_spec(chart), vl_version=_vl_version()),
        # bundle=True inlines vega/vega-lite/vega-embed, so the file opens with no network.
        ".html": lambda: vlc.vegalite_to_html(_spec(chart), vl_version=_vl_version(), bundle=True),
        ".json": lambda: json.dumps(_spec(chart), indent=1),
    }
    if suffix not in writers:
        raise ValueError(f"cannot save a chart as {suffix!r}; use one of {sorted(writers)}")
    content = writers[suffix]()
    if isinstance(content, bytes):
        out.write_bytes(content)
    else:
        out.write_text(content, encoding="utf-8")
    return out


def static(chart: Any, fmt: Literal["svg", "png"] = "svg", *, scale: float = 1.5) -> Any:
    """An IPython display object of the rendered chart: it survives nbconvert and shows with no JS."""
    from IPython.display import SVG, Image

    if fmt == "png":
        return Image(data=to_png(chart, scale=scale), format="png")  # type: ignore[no-untyped-call]
    return SVG(data=to_svg(chart))  # type: ignore[no-untyped-call]
