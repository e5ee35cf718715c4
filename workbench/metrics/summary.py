"""Summaries and uncertainty: percentiles per group, bootstrap confidence intervals for a stat and a ratio.

The bootstrap draws every resample at once as an index matrix (numpy), so 2000 resamples cost a handful of
vectorised calls rather than 2000 Python iterations. Large samples are processed in blocks of resamples to
keep memory bounded; there is still no Python loop per resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "DEFAULT_METRICS",
    "Stat",
    "StatName",
    "bootstrap_ci",
    "diff_ci",
    "percentile",
    "ratio_ci",
    "summarize",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
StatName = Literal["median", "mean", "p50", "p90", "p95", "p99", "max", "min"]
# A callable stat must reduce along `axis` like numpy's reductions: f(matrix, axis=-1) -> vector.
StatFn: TypeAlias = Callable[..., Any]
Stat: TypeAlias = StatName | StatFn

DEFAULT_METRICS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "e2e_ms", "tokens_per_s", "connect_ms")

# Cap on resample-matrix cells held at once (8 bytes each): 2**23 cells = 64 MiB.
_MAX_CELLS = 1 << 23


def _as_array(values: Any) -> FloatArray:
    if isinstance(values, pl.Series):
        values = values.drop_nulls().to_numpy()
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[~np.isnan(arr)]


def percentile(values: Any, q: float) -> float:
    """The q-th percentile (0..100, linear interpolation as numpy's default); NaN for no values.

    Nulls and NaNs are ignored, so a column with failed requests can be passed as is.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    arr = _as_array(values)
    if arr.size == 0:
        return float("nan")
    return float(np.percentile(arr, q))


def _reducer(stat: Stat) -> Callable[[FloatArray], FloatArray]:
    """A function reducing a (k, n) matrix along its last axis to k values."""
    if callable(stat):
        fn = stat

        def reduce_callable(m: FloatArray) -> FloatArray:
            try:
                out = np.asarray(fn(m, axis=-1), dtype=np.float64)
            except TypeError:
                # A stat without an `axis` argument: correct, but one call per resample (slow path).
                out = np.asarray(np.apply_along_axis(fn, -1, m), dtype=np.float64)
            if out.shape != m.shape[:-1]:
                raise ValueError("a callable stat must reduce along the last axis to one value per row")
            return out

        return reduce_callable
    if stat == "mean":
        return lambda m: np.mean(m, axis=-1)
    if stat in ("median", "p50"):
        return lambda m: np.median(m, axis=-1)
    if stat == "max":
        return lambda m: np.max(m, axis=-1)
    if stat == "min":
        return lambda m: np.min(m, axis=-1)
    if stat in ("p90", "p95", "p99"):
        q = float(stat[1:])
        return lambda m: np.percentile(m, q, axis=-1)
    raise ValueError(f"unknown stat {stat!r}: use mean, median, min, max, p50, p90, p95, p99 or a callable")


def _resampled(arr: FloatArray, reduce: Callable[[FloatArray], FloatArray], n_boot: int,
               rng: np.random.Generator) -> FloatArray:
    """`n_boot` bootstrap replicates of the stat: index matrices drawn in blocks bounded by `_MAX_CELLS`."""
    n = arr.size
    block = max(1, _MAX_CELLS // max(n, 1))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        k = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(k, n))
        out[start:start + k] = reduce(arr[idx])
    return out


def _check(level: float, n_boot: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _interval(reps: FloatArray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values: Any, stat: Stat = "median", level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval (lo, hi) of `stat` over `values`. Deterministic per seed.

    NaN bounds for an empty sample. Nulls/NaNs in `values` are ignored.
    """
    _check(level, n_boot)
    arr = _as_array(values)
    if arr.size == 0:
        return float("nan"), float("nan")
    reps = _resampled(arr, _reducer(stat), n_boot, np.random.default_rng(seed))
    return _interval(reps, level)


def _two_sample(a: Any, b: Any, stat: Stat, level: float, n_boot: int, seed: int,
                combine: Callable[[Any, Any], Any]) -> tuple[float, float, float]:
    _check(level, n_boot)
    xa, xb = _as_array(a), _as_array(b)
    if xa.size == 0 or xb.size == 0:
        return float("nan"), float("nan"), float("nan")
    reduce = _reducer(stat)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(combine(reduce(xa[None, :])[0], reduce(xb[None, :])[0]))
        # The two samples are independent (e.g. baseline vs optimized runs), so they resample independently.
        rng = np.random.default_rng(seed)
        reps = np.asarray(combine(_resampled(xa, reduce, n_boot, rng), _resampled(xb, reduce, n_boot, rng)),
                          dtype=np.float64)
    lo, hi = _interval(reps, level)
    return point, lo, hi


def ratio_ci(a: Any, b: Any, stat: Stat = "median", level: float = 0.95, n_boot: int = 2000,
             seed: int = 0) -> tuple[float, float, float]:
    """stat(a) / stat(b) with a bootstrap CI: (ratio, lo, hi). E.g. baseline TTFT over optimized TTFT."""
    return _two_sample(a, b, stat, level, n_boot, seed, lambda x, y: x / y)


def diff_ci(a: Any, b: Any, stat: Stat = "median", level: float = 0.95, n_boot: int = 2000,
            seed: int = 0) -> tuple[float, float, float]:
    """stat(a) − stat(b) with a bootstrap CI: (difference, lo, hi)."""
    return _two_sample(a, b, stat, level, n_boot, seed, lambda x, y: x - y)


def summarize(frame: pl.DataFrame, by: str | Sequence[str] | None = None,
              metrics: Sequence[str] = DEFAULT_METRICS) -> pl.DataFrame:
    """Long-format summary: group keys, metric, count, mean, p50, p90, p95, p99, max, warmup_excluded.

    `by=None` groups by `variant` when the frame has that column. Rows whose `warmup` column is true are
    left out of every statistic and counted in `warmup_excluded`. `count` is the number of non-null values
    (a failed request has no TTFT). Boolean metrics (e.g. connection_reused) become 0/1, so `mean` is a rate.
    """
    if by is None:
        keys: list[str] = ["variant"] if "variant" in frame.columns else []
    elif isinstance(by, str):
        keys = [by]
    else:
        keys = list(by)
    metrics = list(metrics)
    missing = [c for c in [*keys, *metrics] if c not in frame.columns]
    if missing:
        raise KeyError(f"summarize: frame has no column(s) {missing}; it has {frame.columns}")
    if not metrics:
        raise ValueError("summarize: give at least one metric")

    warm = pl.col("warmup").fill_null(False).cast(pl.Boolean) if "warmup" in frame.columns else pl.lit(False)
    flagged = frame.select(*keys, *[pl.col(m).cast(pl.Float64) for m in metrics], warm.alias("__warmup"))
    if keys:
        excluded = flagged.group_by(keys, maintain_order=True).agg(
            pl.col("__warmup").sum().cast(pl.Int64).alias("warmup_excluded")
        )
    else:
        excluded = flagged.select(pl.col("__warmup").sum().cast(pl.Int64).alias("warmup_excluded"))
    kept = flagged.filter(~pl.col("__warmup")).drop("__warmup")
    long = kept.unpivot(index=keys, on=metrics, variable_name="metric", value_name="value")
    v = pl.col("value")
    stats = [
        v.count().cast(pl.Int64).alias("count"),
        v.mean().alias("mean"),
        v.quantile(0.5, "linear").alias("p50"),
        v.quantile(0.9, "linear").alias("p90"),
        v.quantile(0.95, "linear").alias("p95"),
        v.quantile(0.99, "linear").alias("p99"),
        v.max().alias("max"),
    ]
    summary = long.group_by([*keys, "metric"]).agg(stats)
    # Groups in order of first appearance (baseline first if it ran first), metrics in the order asked.
    # A group made only of warm-up rows still gets rows (count 0), so the exclusion is visible.
    groups = excluded.with_row_index("__g")
    grid = groups.join(pl.DataFrame({"metric": metrics}).with_row_index("__m"), how="cross")
    out = grid.join(summary, on=[*keys, "metric"], how="left", nulls_equal=True)
    out = out.with_columns(pl.col("count").fill_null(0)).sort("__g", "__m")
    return out.select(*keys, "metric", "count", "mean", "p50", "p90", "p95", "p99", "max", "warmup_excluded")
