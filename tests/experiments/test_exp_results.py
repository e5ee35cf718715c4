from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from workbench._types import Request, TextDelta
from workbench.experiments import RunResult
from workbench.experiments.bench_report import before_after, html_report, markdown_report
from workbench.metrics import Recorder, to_frame


def _result(variant: str, i: int, ttft_ns: int, warmup: bool = False):  # type: ignore[no-untyped-def]
    req = Request.chat("sim-small", f"prompt {i}", tags={"variant": variant, "repeat": 0, "warmup": warmup})
    rec = Recorder(req, backend="sim", protocol="openai")
    sent = rec.sent(1_000_000_000 + i * 10_000_000)
    for k in range(4):
        t = sent + ttft_ns + k * 1_000_000
        rec.received(10, t)
        rec.event(TextDelta(f"w{k} ", t))
    return rec.finish("ok", end_ns=sent + ttft_ns + 5_000_000)


def _run() -> RunResult:
    results = [_result("baseline", i, 20_000_000 + i * 10_000) for i in range(30)]
    results += [_result("all", i, 10_000_000 + i * 10_000) for i in range(30)]
    results += [_result("all", 99, 900_000_000, warmup=True)]
    frame = to_frame(results).with_columns(
        pl.lit(0.0).alias("scheduled_ms"), pl.lit(0.1).alias("sent_lag_ms"), pl.lit(0.0).alias("client_queue_ms")
    )
    return RunResult(frame=frame, config={"baseline": "baseline", "seed": 0, "repeats": 1},
                     meta={"cpu_samples": [10.0, 12.0], "environment": {"python": "3"}}, results=results)


def test_save_load_round_trip(tmp_path: Path) -> None:
    run = _run()
    path = run.save(tmp_path / "ab")
    assert path == tmp_path / "ab" / "results.parquet"
    assert path.with_suffix(".json").exists()
    back = RunResult.load(tmp_path / "ab")
    assert back.frame.equals(run.frame)
    assert back.config == run.config and back.meta == run.meta
    assert back.summary().equals(run.summary())
    assert back.comparisons().equals(run.comparisons())
    named = run.save(tmp_path / "x.parquet")
    assert RunResult.load(named).frame.height == run.frame.height


def test_summary_excludes_warmup_and_reports_cis() -> None:
    run = _run()
    s = run.summary(["ttft_ms"]).filter(pl.col("variant") == "all").row(0, named=True)
    assert s["count"] == 30 and s["warmup_excluded"] == 1
    assert s["p99"] < 100  # the 900 ms warm-up is not in it
    assert s["p50_lo"] <= s["p50"] <= s["p50_hi"]


def test_comparisons_and_before_after_table() -> None:
    run = _run()
    cmp = run.comparisons(metrics=["ttft_ms"], stats=["median"]).row(0, named=True)
    assert cmp["variant"] == "all" and cmp["factor"] == pytest.approx(2.0, rel=0.05)
    assert cmp["verdict"].startswith("faster by")
    table = before_after(run)
    ttft = table.filter(pl.col("metric") == "TTFT p50").row(0, named=True)
    assert ttft["improvement"].endswith("better") and ttft["verdict"].startswith("faster")
    md = markdown_report(run)
    assert "| TTFT p50 |" in md and "baseline → all" in md
    page = html_report(run, charts=["<svg id='c'></svg>"])
    assert page.startswith("<!doctype html>") and "<svg id='c'>" in page and "http" not in page.split("<body>")[0]


def test_html_report_embeds_svg_charts_offline() -> None:
    from workbench.experiments.bench_cli import _charts

    run = _run()
    svgs = _charts(run)
    assert len(svgs) >= 3 and all(s.lstrip().startswith("<svg") for s in svgs)
    page = html_report(run, charts=svgs)
    assert page.count("<svg") >= 3
    assert "<script" not in page  # static: nothing to fetch, nothing to run
