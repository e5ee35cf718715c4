from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from workbench import Optimizations
from workbench._exceptions import ConfigError
from workbench.experiments import RunResult, ablation_variants, bench_cli, compare_cli

FAST = ["--sim", "ttft_ms=2", "--token-ms", "1", "--jitter", "0", "--max-tokens", "4", "--no-progress"]


def test_parse_variant() -> None:
    assert bench_cli.parse_variant("baseline") == Optimizations()
    assert bench_cli.parse_variant("all") == Optimizations.all()
    v = bench_cli.parse_variant("connection_pool+http2+concurrency=4")
    assert v.connection_pool and v.http2 and v.concurrency == 4 and not v.fast_parse
    with pytest.raises(ConfigError):
        bench_cli.parse_variant("warp_drive")


def test_ablation_variants_toggle_one_at_a_time() -> None:
    vs = ablation_variants()
    base, top = vs["baseline"], vs["all-on"]
    assert base == Optimizations() and top == Optimizations.all()
    bools = [k for k, v in Optimizations.all().as_dict().items() if isinstance(v, bool)]
    for name in bools:
        assert vs[f"-{name}"].enabled() == [k for k in top.enabled() if k != name]
        assert vs[f"+{name}"].enabled() == [name]


def test_bench_on_tls_simulator_then_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    args = ["--tls", "--limit", "6", "--variants", "baseline,all", "--warmup", "1", "--no-charts", *FAST]
    assert bench_cli.main([*args, "--out", str(out_a)]) == 0
    printed = capsys.readouterr().out
    assert "baseline → all" in printed and "| TTFT p50 |" in printed
    for name in ("results.parquet", "results.json", "report.md", "report.html"):
        assert (out_a / name).exists(), name
    run = RunResult.load(out_a)
    assert run.variants == ["baseline", "all"]
    assert run.config["server"]["tls"] is True
    assert run.frame.filter(pl.col("warmup")).height == 2
    assert (run.measured["status"] == "ok").all()
    # baseline opens a connection per request; all-on reuses its pooled connections (its worker pool of
    # concurrency=8 sends the 6 prompts at once, so it needs several connections, not one)
    reuse = run.measured.group_by("variant").agg(pl.col("connection_reused").cast(pl.Float64).mean())
    by = dict(reuse.rows())
    assert by["baseline"] == 0.0 and by["all"] > 0.0

    assert bench_cli.main([*args, "--out", str(out_b), "--seed", "1"]) == 0
    capsys.readouterr()
    assert compare_cli.main([str(out_a), str(out_b), "--metrics", "ttft_ms"]) == 0
    text = capsys.readouterr().out
    assert "## baseline" in text and "## all" in text and "verdict" in text


def test_bench_sweep_writes_one_result_per_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_cli.main(["--synthetic", "8", "--variants", "transport", "--sweep", "concurrency=1,4", "--warmup",
                           "0", "--no-charts", "--out", str(tmp_path), *FAST])
    assert code == 0
    assert (tmp_path / "concurrency-1" / "results.parquet").exists()
    assert (tmp_path / "concurrency-4" / "results.parquet").exists()
    assert pl.read_csv(tmp_path / "sweep.csv").height == 2
    assert "== sweep ==" in capsys.readouterr().out


def test_bad_arguments_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.main(["--variants", "baseline,nonsense", "--no-progress"]) == 2
    assert "unknown optimization" in capsys.readouterr().err


def test_named_variants_allow_an_aa_run() -> None:
    vs = bench_cli._variants("A:baseline, B:baseline,all")
    assert list(vs) == ["A", "B", "all"] and vs["A"] == vs["B"] == Optimizations()
