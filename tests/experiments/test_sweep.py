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
    # 2 requests served at once, the rest queue: 2 streams are delivered in full, 16 get about 2/16.
    # 20 ms per token keeps the client far from its own limit, so the server alone places the knee.
    with ProcessSimulator(Profile.instant(ttft_ms=20.0, token_delay_ms=20.0, max_parallel=2, seed=1)) as s:
        yield s


def test_knee_is_where_the_server_saturates(capped: ProcessSimulator) -> None:
    wl = Workload.synthetic(24, output_tokens=6, model=capped.profile.models[0])
    runs = sweep(
        wl,
        {"all": Optimizations.all()},
        "concurrency=1,2,16",
        backend=capped.backend("openai"),
        progress=False,
        warmup=1,
    )
    frame = sweep_frame(runs)
    levels, ratios = frame.get_column("level").to_list(), frame.get_column("delivered_ratio").to_list()
    ratio = dict(zip(levels, ratios, strict=True))
    assert ratio[1.0] == pytest.approx(1.0)  # the reference level
    # the machine is shared: 2 streams stay well above the saturated level, which sits near 2/16
    assert ratio[2.0] > 0.6 and ratio[16.0] < 0.3, ratio
    assert knee(frame, ratio=0.5) == {"all": 16.0}
    line = knee_line(frame, ratio=0.5)
    assert "knee at concurrency=16" in line and "not the limit" in line, line
    assert not frame.get_column("client_limited").any()
    assert len(sweep_charts(frame)) == 2


def test_knee_is_the_first_level_below_the_ratio() -> None:
    frame = pl.DataFrame(
        {
            "kind": ["concurrency"] * 4,
            "level": [1.0, 8.0, 64.0, 256.0],
            "variant": ["v"] * 4,
            "delivered_ratio": [1.0, 0.95, 0.62, 0.91],
            "client_share": [0.01, 0.05, 0.6, 0.9],
            "client_limited": [False, False, True, True],
        }
    )
    assert knee(frame) == {"v": 64.0}  # the first fall counts, not a later recovery
    assert "client-limited" in knee_line(frame)
    assert knee(frame.with_columns(pl.lit(1.0).alias("delivered_ratio"))) == {"v": None}


def test_rate_sweep_offered_is_rate_times_tokens(capped: ProcessSimulator) -> None:
    wl = Workload.synthetic(12, output_tokens=4, model=capped.profile.models[0])
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
