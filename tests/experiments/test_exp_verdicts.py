from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from workbench.experiments import SLO, comparisons, goodput, verdict
from workbench.experiments.verdicts import client_warnings


def _frame(a: np.ndarray, b: np.ndarray, metric: str = "ttft_ms") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "variant": ["base"] * len(a) + ["opt"] * len(b),
            metric: np.concatenate([a, b]),
            "warmup": [False] * (len(a) + len(b)),
            "status": ["ok"] * (len(a) + len(b)),
        }
    )


def test_verdict_words() -> None:
    assert verdict(1.8, 1.6, 2.0) == "faster by 1.80x, 95% CI 1.60-2.00"
    assert verdict(0.5, 0.4, 0.625) == "slower by 2.00x, 95% CI 1.60-2.50"
    assert verdict(1.2, 1.1, 1.3, higher_is_better=True).startswith("higher by 1.20x")
    assert verdict(1.05, 0.9, 1.2).startswith("no difference detectable")
    assert verdict(float("nan"), 1, 2) == "not enough data"


def test_bootstrap_ci_of_a_known_difference_covers_it() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    for seed in range(10):
        base = rng.lognormal(mean=np.log(100), sigma=0.3, size=300)
        opt = rng.lognormal(mean=np.log(50), sigma=0.3, size=300)  # true median ratio = 2.0
        cmp = comparisons(_frame(base, opt), metrics=["ttft_ms"], stats=["median"], seed=seed, n_boot=1000)
        row = cmp.row(0, named=True)
        assert row["significant"] and row["verdict"].startswith("faster by")
        covered += row["ci_lo"] <= 2.0 <= row["ci_hi"]
    assert covered >= 8


def test_aa_comparison_says_no_difference_in_most_seeds() -> None:
    said_none = 0
    for seed in range(10):
        rng = np.random.default_rng(1000 + seed)
        a = rng.lognormal(np.log(80), 0.4, size=200)
        b = rng.lognormal(np.log(80), 0.4, size=200)
        cmp = comparisons(_frame(a, b), metrics=["ttft_ms"], stats=["median"], seed=seed, n_boot=1000)
        said_none += cmp.get_column("verdict")[0].startswith("no difference detectable")
    assert said_none >= 8


def test_throughput_factor_is_variant_over_baseline() -> None:
    a = np.full(50, 100.0) + np.linspace(0, 1, 50)
    b = np.full(50, 300.0) + np.linspace(0, 1, 50)
    cmp = comparisons(_frame(a, b, "tokens_per_s"), metrics=["tokens_per_s"], stats=["median"])
    assert cmp.get_column("factor")[0] == pytest.approx(3.0, rel=0.01)
    assert cmp.get_column("verdict")[0].startswith("higher by")


def test_warmup_rows_are_excluded_from_comparisons() -> None:
    f = _frame(np.full(20, 10.0), np.full(20, 10.0)).with_columns(pl.lit(False).alias("warmup"))
    warm = pl.DataFrame({"variant": ["opt"] * 5, "ttft_ms": [1e6] * 5, "warmup": [True] * 5, "status": ["ok"] * 5})
    cmp = comparisons(pl.concat([f, warm]), metrics=["ttft_ms"], stats=["median", "p99"])
    assert cmp.get_column("n_variant").to_list() == [20, 20]
    assert cmp.get_column("factor").to_list() == [1.0, 1.0]


def test_goodput_fraction() -> None:
    f = pl.DataFrame(
        {
            "variant": ["a"] * 4,
            "status": ["ok", "ok", "ok", "error"],
            "ttft_ms": [100.0, 600.0, 200.0, None],
            "tpot_ms": [10.0, 10.0, 80.0, None],
            "warmup": [False] * 4,
            "sent_ns": [0, 1, 2, 3],
            "end_ns": [10**9, 10**9, 10**9, 10**9],
        }
    )
    g = goodput(f, SLO(ttft_ms=500, tpot_ms=50)).row(0, named=True)
    assert g["good"] == 1 and g["goodput_fraction"] == 0.25
    assert g["good_per_s"] == pytest.approx(1.0)


def test_client_warnings_cpu_and_growing_lag() -> None:
    n = 40
    f = pl.DataFrame(
        {
            "variant": ["a"] * n,
            "scheduled_ms": np.arange(n, dtype=float),
            "dispatch_lag_ms": np.linspace(0, 50, n),
            "warmup": [False] * n,
        }
    )
    w = client_warnings([99, 100, 98, 97], f)
    assert any("CPU" in x for x in w) and any("schedule lag grew" in x for x in w)
    calm = f.with_columns(pl.lit(0.3).alias("dispatch_lag_ms"))
    assert client_warnings([20, 30, 25], calm) == []


def test_paired_comparison_recovers_a_per_prompt_factor_despite_prompt_spread() -> None:
    from workbench.experiments.verdicts import paired_comparisons

    rng = np.random.default_rng(5)
    n = 60
    prompt_cost = rng.lognormal(np.log(100), 1.0, size=n)  # prompts differ 10x: unpaired medians are noisy
    base = prompt_cost * rng.lognormal(0, 0.05, size=n)
    opt = prompt_cost / 1.5 * rng.lognormal(0, 0.05, size=n)
    f = pl.DataFrame(
        {
            "variant": ["base"] * n + ["opt"] * n,
            "prompt_id": [f"p{i}" for i in range(n)] * 2,
            "repeat": [0] * (2 * n),
            "ttft_ms": np.concatenate([base, opt]),
            "warmup": [False] * (2 * n),
        }
    )
    row = paired_comparisons(f, metrics=["ttft_ms"]).row(0, named=True)
    assert row["ci_lo"] <= 1.5 <= row["ci_hi"] and row["ci_hi"] - row["ci_lo"] < 0.1
    assert row["verdict"].startswith("faster by 1.")
    unpaired = comparisons(f, metrics=["ttft_ms"], stats=["median"]).row(0, named=True)
    assert unpaired["ci_hi"] - unpaired["ci_lo"] > 5 * (row["ci_hi"] - row["ci_lo"])


def test_tail_verdicts_need_enough_samples() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(np.log(100), 0.2, 80), rng.lognormal(np.log(100), 0.2, 80)
    b[-1] = 1e4  # one outlier would decide a p99 "verdict" on 80 samples
    row = comparisons(_frame(a, b), metrics=["ttft_ms"], stats=["p99"]).row(0, named=True)
    assert row["verdict"].startswith("too few samples for a p99 verdict") and not row["significant"]
