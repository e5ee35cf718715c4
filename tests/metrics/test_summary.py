from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from workbench.metrics import bootstrap_ci, diff_ci, percentile, ratio_ci, summarize, to_frame
from workbench.metrics import summary as summary_mod


def test_percentile_matches_numpy_and_ignores_missing() -> None:
    x = np.random.default_rng(3).exponential(5.0, 1001)
    for q in (0, 50, 90, 99, 100):
        assert percentile(x, q) == pytest.approx(np.percentile(x, q))
    assert percentile(pl.Series([1.0, None, 3.0]), 50) == 2.0
    assert percentile([1.0, float("nan"), 3.0], 50) == 2.0
    assert np.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_bootstrap_is_deterministic_under_seed() -> None:
    x = np.random.default_rng(0).normal(10, 2, 300)
    assert bootstrap_ci(x, "median", seed=7) == bootstrap_ci(x, "median", seed=7)
    assert bootstrap_ci(x, "median", seed=7) != bootstrap_ci(x, "median", seed=8)
    lo, hi = bootstrap_ci(x, "p99", level=0.9, n_boot=500)
    assert lo <= np.percentile(x, 99) + 1e-9 and lo < hi


def test_bootstrap_blocks_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Memory blocking draws the same index stream, so the interval is identical to one big matrix.
    x = np.random.default_rng(1).normal(0, 1, 200)
    whole = bootstrap_ci(x, "mean", n_boot=300, seed=4)
    monkeypatch.setattr(summary_mod, "_MAX_CELLS", 200 * 7)
    assert bootstrap_ci(x, "mean", n_boot=300, seed=4) == pytest.approx(whole, abs=0, rel=0)


def test_callable_stat_is_called_once_for_all_resamples() -> None:
    calls: list[tuple[int, ...]] = []

    def trimmed_mean(m: np.ndarray, axis: int = -1) -> np.ndarray:
        calls.append(m.shape)
        s = np.sort(m, axis=axis)
        return np.asarray(s[..., 1:-1].mean(axis=axis))

    x = np.arange(50, dtype=float)
    lo, hi = bootstrap_ci(x, trimmed_mean, n_boot=1000)
    assert calls == [(1000, 50)]  # one vectorised call: no Python loop per resample
    assert lo < 24.5 < hi


def test_bootstrap_ci_coverage_of_known_mean() -> None:
    # 95% intervals of the mean of N(5, 1) samples should cover 5 about 95% of the time.
    rng = np.random.default_rng(11)
    trials = 200
    covered = 0
    for t in range(trials):
        lo, hi = bootstrap_ci(rng.normal(5.0, 1.0, 80), "mean", n_boot=1000, seed=t)
        covered += lo <= 5.0 <= hi
    assert 0.88 * trials <= covered <= 0.99 * trials


def test_diff_and_ratio_ci_cover_known_truth() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(13.0, 2.0, 400)
    b = rng.normal(10.0, 2.0, 400)
    d, lo, hi = diff_ci(a, b, "mean")
    assert d == pytest.approx(a.mean() - b.mean()) and lo < 3.0 < hi and hi - lo < 1.0
    # Lognormal medians are exp(mu): a ratio of medians of exactly 2.
    la = rng.lognormal(np.log(20.0), 0.5, 500)
    lb = rng.lognormal(np.log(10.0), 0.5, 500)
    r, rlo, rhi = ratio_ci(la, lb, "median")
    assert r == pytest.approx(np.median(la) / np.median(lb))
    assert rlo < 2.0 < rhi and rlo > 1.5 and rhi < 2.5
    # Swapping the samples gives the reciprocal ratio.
    r2, _, _ = ratio_ci(lb, la, "median")
    assert r2 == pytest.approx(1 / r)
    # No difference: the interval contains 1 and is deterministic.
    same = ratio_ci(la, la[::-1], "mean", seed=3)
    assert same[1] < 1.0 < same[2] and same == ratio_ci(la, la[::-1], "mean", seed=3)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], "mode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.5)
    assert all(np.isnan(v) for v in ratio_ci([], [1.0]))


def _frame() -> pl.DataFrame:
    return pl.DataFrame({
        "variant": ["a"] * 6 + ["b"] * 4,
        "warmup": [True, False, False, False, False, False, True, False, False, False],
        "ttft_ms": [1000.0, 1.0, 2.0, 3.0, 4.0, None, 500.0, 10.0, 20.0, 30.0],
        "connection_reused": [False, True, True, False, True, None, False, True, True, True],
    })


def test_summarize_known_values_and_warmup_exclusion() -> None:
    s = summarize(_frame(), metrics=("ttft_ms", "connection_reused"))
    assert s.columns == ["variant", "metric", "count", "mean", "p50", "p90", "p95", "p99", "max", "warmup_excluded"]
    rows = {(r["variant"], r["metric"]): r for r in s.iter_rows(named=True)}
    a = rows[("a", "ttft_ms")]
    assert a["count"] == 4 and a["mean"] == 2.5 and a["max"] == 4.0 and a["warmup_excluded"] == 1
    assert a["p50"] == pytest.approx(np.percentile([1, 2, 3, 4], 50))
    assert a["p90"] == pytest.approx(np.percentile([1, 2, 3, 4], 90))
    assert a["p99"] == pytest.approx(np.percentile([1, 2, 3, 4], 99))
    b = rows[("b", "ttft_ms")]
    assert b["count"] == 3 and b["mean"] == 20.0 and b["max"] == 30.0  # the 500 ms warm-up is gone
    assert rows[("a", "connection_reused")]["mean"] == pytest.approx(0.75)  # a rate
    # Groups in order of appearance, metrics in the order asked.
    assert s["variant"].to_list() == ["a", "a", "b", "b"]
    assert s["metric"].to_list() == ["ttft_ms", "connection_reused"] * 2


def test_summarize_groupings_and_errors() -> None:
    f = _frame().with_columns(pl.Series("repeat", [0, 0, 1, 1, 0, 1, 0, 0, 1, 1]))
    s = summarize(f, by=("variant", "repeat"), metrics=("ttft_ms",))
    assert s.height == 4 and s["count"].sum() == 7 and s["warmup_excluded"].sum() == 2
    whole = summarize(f, by=(), metrics=("ttft_ms",))
    assert whole.height == 1 and whole["count"][0] == 7 and whole["warmup_excluded"][0] == 2
    only_warm = summarize(f.filter(pl.col("warmup")), metrics=("ttft_ms",))
    assert only_warm["count"].to_list() == [0, 0] and only_warm["warmup_excluded"].to_list() == [1, 1]
    with pytest.raises(KeyError, match="nope"):
        summarize(f, metrics=("nope",))


def test_summarize_real_frame(make_result) -> None:
    rs = [make_result(texts_at_ms=((10.0 + k, "a"), (20.0 + k, "b")), tags={"variant": v, "warmup": k == 0})
          for k in range(4) for v in ("base", "opt")]
    s = summarize(to_frame(rs))
    ttft = s.filter(pl.col("metric") == "ttft_ms")
    assert ttft["variant"].to_list() == ["base", "opt"] and ttft["count"].to_list() == [3, 3]
    assert ttft["mean"].to_list() == pytest.approx([12.0, 12.0])
    assert summarize(to_frame([])).height == 0
