"""The sweep command: delivered vs offered per level, the knee, and its charts, against a simulator whose
capacity is known (max_parallel), so where the knee must fall is fixed by the server, not guessed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from workbench.experiments import bench_cli
from workbench.experiments.runner import sweep
from workbench.experiments.sweep import knee, knee_line, sweep_charts, sweep_frame
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations
from workbench.simulator import Profile
from workbench.simulator.process import ProcessSimulator


@pytest.fixture(scope="module")
def capped() -> Iterator[ProcessSimulator]:
    # 4 requests served at once, the rest queue: up to 4 streams everything is delivered, at 16 about a quarter
    with ProcessSimulator(Profile.instant(ttft_ms=10.0, token_delay_ms=5.0, max_parallel=4, seed=1)) as s:
        yield s


def test_knee_is_where_the_server_saturates(capped: ProcessSimulator) -> None:
    wl = Workload.synthetic(32, output_tokens=8, model=capped.profile.models[0])
    runs = sweep(
        wl,
        {"all": Optimizations.all()},
        "concurrency=1,4,16",
        backend=capped.backend("openai"),
        progress=False,
        warmup=1,
    )
    frame = sweep_frame(runs)
    ratio = dict(zip(frame.get_column("level").to_list(), frame.get_column("delivered_ratio").to_list()))
    assert ratio[1.0] == pytest.approx(1.0)  # the reference level
    assert ratio[4.0] > 0.9 and ratio[16.0] < 0.5, ratio
    assert knee(frame) == {"all": 16.0}
    line = knee_line(frame)
    assert "knee at concurrency=16" in line and "not the limit" in line, line
    assert not frame.get_column("client_limited").any()
    assert len(sweep_charts(frame)) == 2


def test_rate_sweep_offered_is_rate_times_tokens(capped: ProcessSimulator) -> None:
    wl = Workload.synthetic(12, output_tokens=8, model=capped.profile.models[0])
    runs = sweep(
        wl,
        {"all": Optimizations.all()},
        "rate=5,20",
        backend=capped.backend("openai"),
        progress=False,
        warmup=0,
    )
    frame = sweep_frame(runs)
    assert frame.get_column("kind").to_list() == ["rate", "rate"]
    tokens = frame.get_column("mean_output_tokens").to_list()
    assert frame.get_column("offered_tokens_per_s").to_list() == pytest.approx(
        [5 * tokens[0], 20 * tokens[1]]
    )
    assert set(knee(frame)) == {"all"}


def test_bench_sweep_writes_knee_and_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    code = bench_cli.main(
        [
            "--sweep", "concurrency=1,4", "--synthetic", "8", "--output-tokens", "6", "--ttft-ms", "5",
            "--token-ms", "3", "--variants", "all", "--warmup", "0", "--no-progress", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "delivered vs offered" in text and "client overhead" in text
    table = pl.read_csv(out / "sweep_load.csv")
    assert table.height == 2 and "delivered_ratio" in table.columns
    assert (out / "sweep_knee.txt").read_text().strip()
    assert (out / "sweep.html").read_text().count("<svg") == 2
