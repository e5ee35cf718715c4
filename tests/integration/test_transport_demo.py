"""`workbench demo` end to end: real simulator (TLS + HTTP/2), both variants, table, results file."""

from __future__ import annotations

import socket
from pathlib import Path

import polars as pl
import pytest

from workbench.demos import transport as transport_demo


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = transport_demo.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_demo_tls_compares_variants_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--requests", "3", "--rounds", "2", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "TLS, HTTP/2 offered" in out
    for label in ("TTFT p50 (ms)", "TTFT p99 (ms)", "tokens/s p50", "connect ms (mean/request)",
                  "connections reused", "HTTP version", "baseline/optimized"):
        assert label in out
    files = list(tmp_path.glob("demo-*.parquet"))
    assert len(files) == 1 and str(files[0]) in out
    f = pl.read_parquet(files[0])
    assert f.height == 12 and f["status"].to_list() == ["ok"] * 12
    assert f.group_by("variant").len().sort("variant")["len"].to_list() == [6, 6]
    base = f.filter(pl.col("variant") == "baseline")
    opt = f.filter(pl.col("variant") == "optimized")
    # Baseline: a new TLS connection every time, over HTTP/1.1. Optimized: one pooled HTTP/2 connection.
    assert base["connection_reused"].to_list() == [False] * 6 and set(base["http_version"]) == {"HTTP/1.1"}
    assert opt["connection_reused"].sum() == 5 and set(opt["http_version"]) == {"HTTP/2"}
    assert (base["connect_ms"] > 0).all()
    assert opt["opt_connection_pool"].all() and not base["opt_connection_pool"].any()
    # Interleaved request by request, the order flipping in each pair, same prompts for both variants.
    assert f["variant"].to_list()[:4] == ["baseline", "optimized", "optimized", "baseline"]
    assert sorted(base["prompt"].to_list()) == sorted(opt["prompt"].to_list())
    assert set(f["round"]) == {0, 1}


def test_demo_url_without_model_uses_the_first_model_the_server_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.simulator import Profile, Simulator

    profile = Profile.instant(models=("alpha-chat", "beta-chat"), default_tokens_min=3, default_tokens_max=3)
    with Simulator(profile) as sim:
        code, _, err = _run(capsys, "--url", sim.url, "--requests", "1", "--rounds", "1", "--out",
                            str(tmp_path), "--quiet")
    assert code == 0, err
    f = pl.read_parquet(next(tmp_path.glob("demo-*.parquet")))
    assert set(f["model"]) == {"alpha-chat"} and f["status"].to_list() == ["ok", "ok"]


def test_demo_streams_first_answer_live(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--requests", "1", "--rounds", "1", "--no-tls", "--protocol", "openai",
                          "--out", str(tmp_path))
    assert code == 0, err
    f = pl.read_parquet(next(tmp_path.glob("demo-*.parquet")))
    assert "plain HTTP/1.1" in out and set(f["protocol"]) == {"openai"}
    first = f.row(0, named=True)
    # The live answer printed is the first request's whole text (wrapping only turns spaces into newlines).
    live = out.split("(baseline, live)\n", 1)[1].split("\n  [TTFT", 1)[0]
    assert first["text_chars"] > 20 and len(live) == first["text_chars"]
    assert all(len(line) <= 100 for line in live.splitlines())


def test_demo_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    for model in (["--model", "m"], []):  # without --model the demo first asks the server for its models
        code, _, err = _run(capsys, "--url", f"http://127.0.0.1:{port}", *model, "--protocol", "ollama",
                            "--requests", "1", "--rounds", "1", "--out", str(tmp_path), "--quiet")
        assert code == 1 and err.startswith("workbench demo:") and "connect" in err.lower(), err
    assert not list(tmp_path.glob("*.parquet"))
    code, _, err = _run(capsys, "--rounds", "0")
    assert code == 2 and "--rounds" in err
