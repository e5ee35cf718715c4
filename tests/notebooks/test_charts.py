"""Charts from hand-made frames: each renders through vl-convert, empty frames say "no data", data is aggregated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench import charts as c

RNG = np.random.default_rng(7)
N = 300


def _requests(n: int = N) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "variant": RNG.choice(["baseline", "all-on"], n).tolist(),
            "status": ["ok"] * (n - 3) + ["error"] * 3,
            "ttft_ms": RNG.gamma(2.0, 20.0, n),
            "tokens_per_s": RNG.normal(80.0, 10.0, n),
            "cache": RNG.choice(["miss", "exact", "semantic", "bypass"], n).tolist(),
            "sent_ns": np.sort(RNG.integers(0, 10**10, n)),
        }
    )


def _chunks() -> pl.DataFrame:
    rows = []
    for rid, variant, step in (("a", "x", 10.0), ("b", "y", 14.0)):
        t = np.cumsum(RNG.random(40) * step)
        for i in range(40):
            rows.append({"request_id": rid, "variant": variant, "i": i, "t_ms": float(t[i]), "text_len": 3})
    return pl.DataFrame(rows)


def _spec_text(chart: object) -> str:
    return json.dumps(chart.to_dict())  # type: ignore[attr-defined]


def _data_rows(chart: object) -> int:
    spec = chart.to_dict()  # type: ignore[attr-defined]
    return sum(len(v) for v in spec.get("datasets", {}).values())


def _all_charts() -> dict[str, object]:
    itl = pl.DataFrame({"request_id": ["a"] * 500, "variant": RNG.choice(["x", "y"], 500).tolist(),
                        "itl_ms": RNG.gamma(3.0, 5.0, 500)})
    gt = pl.DataFrame({"client_ms": RNG.random(100) * 100}).with_columns((pl.col("client_ms") - 0.25).alias("server_ms"))
    cmp = pl.DataFrame({"variant": ["pool", "http2"] * 2, "metric": ["ttft_ms"] * 2 + ["tokens_per_s"] * 2,
                        "stat": ["median"] * 4, "factor": [1.3, 1.0, 1.1, 0.98], "ci_lo": [1.2, 0.9, 1.0, 0.9],
                        "ci_hi": [1.4, 1.1, 1.2, 1.05]})
    audit = pl.DataFrame({"threshold": [0.8, 0.9, 0.95], "hit_rate": [0.9, 0.6, 0.3], "false_hit_rate": [0.2, 0.03, 0.0],
                          "hit_rate_lo": [0.85, 0.55, 0.25], "hit_rate_hi": [0.95, 0.65, 0.35],
                          "false_hit_rate_lo": [0.15, 0.01, 0.0], "false_hit_rate_hi": [0.25, 0.06, 0.02]})
    sweep = pl.DataFrame({"concurrency": [1, 2, 4], "offered_tokens_per_s": [100.0, 200.0, 400.0],
                          "delivered_tokens_per_s": [98.0, 190.0, 300.0]})
    f = _requests()
    return {
        "ttft": c.ttft_histogram(f),
        "itl": c.itl_histogram(itl),
        "cache": c.cache_hit_rate_over_time(f),
        "throughput": c.throughput_by_variant(f, interval="iqr"),
        "timeline": c.token_timeline(_chunks()),
        "overhead": c.client_overhead(gt),
        "ablation": c.ablation_chart(cmp),
        "audit": c.audit_chart(audit, chosen=0.9),
        "sweep": c.concurrency_sweep_chart(sweep),
    }


def test_every_chart_renders_to_svg_with_its_title() -> None:
    for name, chart in _all_charts().items():
        svg = c.to_svg(chart)
        assert svg.startswith("<svg"), name
        title = chart.to_dict()["title"]["text"]  # type: ignore[attr-defined]
        # vl-convert writes titles as text; "&" etc. would be escaped, our titles have none.
        assert title.split(" (")[0] in svg, (name, title)


@pytest.mark.parametrize(
    "fn",
    [c.ttft_histogram, c.itl_histogram, c.cache_hit_rate_over_time, c.throughput_by_variant, c.token_timeline,
     c.client_overhead, c.ablation_chart, c.audit_chart, c.concurrency_sweep_chart],
)
def test_empty_frame_gives_a_no_data_chart(fn: object) -> None:
    chart = fn(pl.DataFrame())  # type: ignore[operator]
    assert "no data" in _spec_text(chart)
    assert "no data" in c.to_svg(chart)


def test_all_null_values_give_no_data_not_an_error() -> None:
    f = _requests().with_columns(pl.lit(None, pl.Float64).alias("ttft_ms"), pl.lit(None, pl.Float64).alias("tokens_per_s"))
    assert "no data" in _spec_text(c.ttft_histogram(f))
    assert "no data" in _spec_text(c.throughput_by_variant(f))


def test_missing_column_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ttft_ms"):
        c.ttft_histogram(pl.DataFrame({"x": [1.0]}))


def test_histogram_is_aggregated_and_excludes_failed_and_warmup_rows() -> None:
    f = _requests(5000).with_columns(pl.int_range(pl.len()).lt(100).alias("warmup"))
    chart = c.ttft_histogram(f, bins=25)
    # 2 groups x 25 bins + 2 median rows, not 5000 samples (and no MaxRowsError).
    assert _data_rows(chart) == 2 * 25 + 2
    counts = sum(r["count"] for d in chart.to_dict()["datasets"].values() for r in d if "count" in r and "start" in r)
    ok_measured = f.filter((pl.col("status") == "ok") & ~pl.col("warmup")).height
    assert counts == ok_measured


def test_cache_shares_sum_to_one_per_bin_and_use_fixed_colours() -> None:
    f = _requests()
    spec = c.cache_hit_rate_over_time(f, bins=10).to_dict()
    rows = next(iter(spec["datasets"].values()))
    by_bin: dict[float, float] = {}
    for r in rows:
        by_bin[r["start"]] = by_bin.get(r["start"], 0.0) + r["share"]
    assert all(abs(v - 1.0) < 1e-9 for v in by_bin.values())
    scale = spec["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"], strict=True))["semantic"] == c.CACHE_COLORS["semantic"]


def test_throughput_bootstrap_interval_brackets_the_median() -> None:
    f = _requests()
    chart = c.throughput_by_variant(f, split_cache=False)  # bootstrap CI via workbench.metrics.summary
    rows = [r for d in chart.to_dict()["datasets"].values() for r in d if "median" in r]
    assert {r["group"] for r in rows} == {"baseline", "all-on"}
    for r in rows:
        assert r["lo"] <= r["median"] <= r["hi"]
        assert r["hi"] - r["lo"] < 10.0  # ~150 samples of sd 10: the CI of the median is narrow


def test_throughput_never_pools_cache_hits_with_streams_by_default() -> None:
    f = _requests()  # misses, bypasses and exact / semantic hits in both variants
    rows = [r for d in c.throughput_by_variant(f).to_dict()["datasets"].values() for r in d if "median" in r]
    groups = {r["group"] for r in rows}
    assert len(groups) == 4 and all(("streamed" in g) != ("cache hit" in g) for g in groups), groups
    assert "cache hits (replays) apart" in _spec_text(c.throughput_by_variant(f))


def test_token_timeline_is_cumulative_and_capped() -> None:
    chart = c.token_timeline(_chunks())
    rows = next(iter(chart.to_dict()["datasets"].values()))
    last = {r["request_id"]: r["chars"] for r in rows}
    assert last == {"a": 120, "b": 120}
    big = pl.DataFrame({"request_id": ["z"] * 20000, "i": list(range(20000)), "t_ms": np.arange(20000.0),
                        "text_len": [1] * 20000})
    rows = next(iter(c.token_timeline(big).to_dict()["datasets"].values()))
    assert len(rows) <= 5000 and rows[-1]["chars"] == 20000


def test_ablation_reads_experiment_comparisons_and_plain_ratios() -> None:
    cmp = pl.DataFrame({"variant": ["pool", "pool"], "metric": ["ttft_ms", "ttft_ms"], "stat": ["median", "p99"],
                        "factor": [1.3, 2.0], "ci_lo": [1.2, 1.5], "ci_hi": [1.4, 2.5]})
    datasets = c.ablation_chart(cmp).to_dict()["datasets"].values()
    assert [r["ratio"] for d in datasets for r in d if "ratio" in r] == [1.3]
    plain = pl.DataFrame({"variant": ["a"], "metric": ["m"], "ratio": [0.5], "lo": [0.4], "hi": [0.6]})
    assert "ratio to baseline" in _spec_text(c.ablation_chart(plain))


def test_save_chart_formats(tmp_path: Path) -> None:
    chart = _all_charts()["ttft"]
    png = c.save_chart(chart, tmp_path / "a.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert c.save_chart(chart, tmp_path / "a.svg").read_text().startswith("<svg")
    html = c.save_chart(chart, tmp_path / "a.html").read_text()
    # Self-contained: vega is inlined, nothing is fetched from a CDN.
    assert "<script src=\"http" not in html and "cdn.jsdelivr" not in html
    assert json.loads(c.save_chart(chart, tmp_path / "a.json").read_text())["title"]["text"]
    with pytest.raises(ValueError, match=r"\.gif"):
        c.save_chart(chart, tmp_path / "a.gif")


def test_static_display_objects() -> None:
    chart = _all_charts()["audit"]
    svg = c.static(chart)
    assert svg._repr_svg_().startswith("<svg")
    png = c.static(chart, "png")
    assert png.data.startswith(b"\x89PNG")


def test_throughput_switches_to_a_log_axis_when_cache_hits_dwarf_the_rest() -> None:
    f = _requests(200)
    hits = f.with_columns(
        pl.when(pl.col("variant") == "all-on").then(pl.col("tokens_per_s") * 10_000).otherwise(pl.col("tokens_per_s"))
    )
    assert "log" in _spec_text(c.throughput_by_variant(hits, interval="iqr"))
    assert '"log"' not in _spec_text(c.throughput_by_variant(f, interval="iqr"))
