"""Verdicts, goodput and client-bottleneck checks, on top of `workbench.metrics.summary`.

A comparison is stated as an improvement factor (> 1 is better) with a bootstrap CI, and in words: "faster by
1.8x, 95% CI 1.6-2.0", or "no difference detectable" whenever the interval contains 1.

Streaming figures (tokens/s, TPOT, ITL) are computed from live streams only (cache `off`/`miss`/`bypass`): a
cache hit is a replay, and its figures go in rows of their own (`tokens_per_s (cache hits)`), never pooled
with the streams. TTFT and E2E keep every request (a hit is what the user waited), and a verdict over rows
that mix hits and streams says so. A variant whose toggles could not act in the run (`exercised`) gets
"not exercised by this workload" instead of a ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench.metrics.summary import Stat, bootstrap_ci, ratio_ci, summarize

__all__ = [
    "COMPARE_METRICS",
    "HIGHER_IS_BETTER",
    "SLO",
    "client_warnings",
    "comparisons",
    "goodput",
    "is_stream_metric",
    "live_rows",
    "min_samples",
    "paired_comparisons",
    "split_stream_metrics",
    "summary_with_ci",
    "verdict",
]

COMPARE_METRICS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "e2e_ms", "tokens_per_s")
HIGHER_IS_BETTER = frozenset({"tokens_per_s", "output_tokens", "connection_reused"})
# Figures of the token stream itself: a cache hit's replay has its own pacing, so they never pool with hits.
STREAM_METRICS = frozenset({"tokens_per_s", "tpot_ms", "itl_ms", "itl_p50_ms", "itl_p99_ms"})
LIVE = ("off", "miss", "bypass")
HITS = ("exact", "semantic")
HIT_SUFFIX = " (cache hits)"
NOT_EXERCISED = "not exercised by this workload"


def is_stream_metric(metric: str) -> bool:
    return metric in STREAM_METRICS or metric.startswith("itl_")


def live_rows(frame: pl.DataFrame) -> pl.Expr:
    """True for live streams (no cache, a miss or a bypass): the rows streaming figures come from."""
    if "cache" not in frame.columns:
        return pl.lit(True)
    return pl.col("cache").is_null() | pl.col("cache").is_in(LIVE)


def _hit_rows(frame: pl.DataFrame) -> pl.Expr:
    if "cache" not in frame.columns:
        return pl.lit(False)
    return pl.col("cache").is_in(HITS).fill_null(False)

_WORDS = {True: ("higher", "lower"), False: ("faster", "slower")}


def verdict(
    factor: float, lo: float, hi: float, *, higher_is_better: bool = False, level: float = 0.95
) -> str:
    """Plain words for an improvement factor (> 1 better) and its CI."""
    if not all(math.isfinite(x) and x > 0 for x in (factor, lo, hi)):
        return "not enough data"
    pct = f"{level * 100:.0f}% CI"
    if lo <= 1.0 <= hi:
        return f"no difference detectable ({factor:.2f}x, {pct} {lo:.2f}-{hi:.2f})"
    better, worse = _WORDS[higher_is_better]
    if lo > 1.0:
        return f"{better} by {factor:.2f}x, {pct} {lo:.2f}-{hi:.2f}"
    return f"{worse} by {1 / factor:.2f}x, {pct} {1 / hi:.2f}-{1 / lo:.2f}"


def _measured(frame: pl.DataFrame) -> pl.DataFrame:
    if "warmup" in frame.columns:
        frame = frame.filter(~pl.col("warmup").fill_null(False))
    return frame


def _values(frame: pl.DataFrame, variant: str, metric: str) -> np.ndarray:
    col = frame.filter(pl.col("variant") == variant).get_column(metric).cast(pl.Float64).drop_nulls()
    return col.to_numpy()


_TAIL = {"p90": 0.90, "p95": 0.95, "p99": 0.99, "max": 1.0}


def min_samples(stat: str) -> int:
    """Fewest samples per side for a verdict on `stat`: at least two values beyond the quantile.

    The bootstrap cannot estimate a tail it has (almost) no points in: with 84 samples the "p99" is the
    largest value, and one outlier decides the verdict (an A/A run then finds a difference).
    """
    q = _TAIL.get(stat)
    if q is None:
        return 2
    if q >= 1.0:
        return 10**9
    return math.ceil(2 / (1 - q) - 1e-9)


def comparisons(
    frame: pl.DataFrame,
    *,
    baseline: str | None = None,
    metrics: Sequence[str] = COMPARE_METRICS,
    stats: Sequence[str] = ("median", "p99"),
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    order: Sequence[str] | None = None,
    not_exercised: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Each variant against `baseline` (default: the first variant), per metric and stat.

    `factor` is the improvement (baseline/variant for latencies, variant/baseline for throughputs), so > 1
    always means the variant is better. Warm-up rows are excluded. Streaming metrics compare live streams
    only; when both sides have cache hits, `<metric> (cache hits)` rows compare the replays. A TTFT/E2E
    verdict over rows that mix hits and streams says so. `not_exercised` (variant -> why, see
    `not_exercised_variants`): those variants get no ratio, only the reason.
    """
    data = _measured(frame)
    skip = dict(not_exercised or {})
    variants = [v for v in data.get_column("variant").unique(maintain_order=True).to_list() if v is not None]
    if order is not None:
        variants = [v for v in order if v in variants] + [v for v in variants if v not in order]
    if not variants:
        return pl.DataFrame(schema=_CMP_SCHEMA)
    base = baseline if baseline is not None else variants[0]
    if base not in variants:
        raise KeyError(f"baseline {base!r} is not among the variants {variants}")
    rows: list[dict[str, Any]] = []
    live, hits = data.filter(live_rows(data)), data.filter(_hit_rows(data))
    for var in variants:
        if var == base:
            continue
        for metric, a, b, note in _sides(data, live, hits, base, var, metrics):
            hib = metric.removesuffix(HIT_SUFFIX) in HIGHER_IS_BETTER
            for stat in stats:
                if var in skip:
                    rows.append(_skipped_row(base, var, metric, stat, a.size, b.size, skip[var]))
                    continue
                st: Stat = stat  # type: ignore[assignment]
                if hib:
                    factor, lo, hi = ratio_ci(b, a, stat=st, level=level, n_boot=n_boot, seed=seed)
                else:
                    factor, lo, hi = ratio_ci(a, b, stat=st, level=level, n_boot=n_boot, seed=seed)
                need = min_samples(stat)
                enough = min(a.size, b.size) >= need
                words = verdict(factor, lo, hi, higher_is_better=hib, level=level)
                if not enough:
                    words = f"too few samples for a {stat} verdict (n={min(a.size, b.size)}, need {need})"
                if note:
                    words = f"{words} ({note})"
                rows.append(
                    {
                        "baseline": base,
                        "variant": var,
                        "metric": metric,
                        "stat": stat,
                        "n_baseline": int(a.size),
                        "n_variant": int(b.size),
                        "factor": factor,
                        "ci_lo": lo,
                        "ci_hi": hi,
                        "significant": enough and bool(math.isfinite(lo) and (lo > 1.0 or hi < 1.0)),
                        "verdict": words,
                    }
                )
    return pl.DataFrame(rows, schema=_CMP_SCHEMA)


def _sides(
    data: pl.DataFrame,
    live: pl.DataFrame,
    hits: pl.DataFrame,
    base: str,
    var: str,
    metrics: Sequence[str],
) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(metric label, baseline values, variant values, note) for each comparison to make."""
    out: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    for metric in metrics:
        if metric not in data.columns:
            continue
        if not is_stream_metric(metric):
            n_hit = _count(hits, base) + _count(hits, var)
            n_all = _count(data, base) + _count(data, var)
            note = f"pools {n_hit} cache hits with {n_all - n_hit} live streams" if 0 < n_hit < n_all else ""
            out.append((metric, _values(data, base, metric), _values(data, var, metric), note))
            continue
        dropped = _count(hits, base) + _count(hits, var)
        note = f"live streams only; {dropped} cache hits reported apart" if dropped else ""
        out.append((metric, _values(live, base, metric), _values(live, var, metric), note))
        ha, hb = _values(hits, base, metric), _values(hits, var, metric)
        if ha.size and hb.size:
            out.append((metric + HIT_SUFFIX, ha, hb, "cache-hit replays, not streams"))
    return out


def _count(frame: pl.DataFrame, variant: str) -> int:
    return frame.filter(pl.col("variant") == variant).height


def _skipped_row(base: str, var: str, metric: str, stat: str, na: int, nb: int, why: str) -> dict[str, Any]:
    return {
        "baseline": base,
        "variant": var,
        "metric": metric,
        "stat": stat,
        "n_baseline": na,
        "n_variant": nb,
        "factor": math.nan,
        "ci_lo": math.nan,
        "ci_hi": math.nan,
        "significant": False,
        "verdict": f"{NOT_EXERCISED}: {why}",
    }


def paired_comparisons(
    frame: pl.DataFrame,
    *,
    baseline: str | None = None,
    metrics: Sequence[str] = COMPARE_METRICS,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    order: Sequence[str] | None = None,
    not_exercised: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Paired by prompt: the same prompt (and repeat) under the baseline and the variant form one pair.

    `factor` is the geometric mean over pairs of the per-prompt improvement, with a bootstrap CI over pairs.
    Interleaving makes the pairs close in time, so prompt length and drift cancel within a pair; this is
    usually much tighter than the ratio of medians, and stays stable when a cache makes a variant bimodal.
    """
    data = _measured(frame)
    if "prompt_id" not in data.columns:
        return pl.DataFrame(schema=_CMP_SCHEMA)
    keys = ["prompt_id", "repeat"] if "repeat" in data.columns else ["prompt_id"]
    variants = [v for v in data.get_column("variant").unique(maintain_order=True).to_list() if v is not None]
    if order is not None:
        variants = [v for v in order if v in variants] + [v for v in variants if v not in order]
    if not variants:
        return pl.DataFrame(schema=_CMP_SCHEMA)
    base = baseline if baseline is not None else variants[0]
    rows: list[dict[str, Any]] = []
    skip = dict(not_exercised or {})
    live = data.filter(live_rows(data))
    for var in variants:
        if var == base:
            continue
        for metric in metrics:
            if metric not in data.columns:
                continue
            if var in skip:
                rows.append(_skipped_row(base, var, metric, "paired_geomean", 0, 0, skip[var]))
                continue
            src = live if is_stream_metric(metric) else data  # a hit paired with a stream is no pair
            a = src.filter(pl.col("variant") == base).select(
                *keys, pl.col(metric).cast(pl.Float64).alias("a")
            )
            b = src.filter(pl.col("variant") == var).select(
                *keys, pl.col(metric).cast(pl.Float64).alias("b")
            )
            pairs = a.join(b, on=keys).drop_nulls().filter((pl.col("a") > 0) & (pl.col("b") > 0))
            hib = metric in HIGHER_IS_BETTER
            logr = (np.log(pairs["b"].to_numpy()) - np.log(pairs["a"].to_numpy())) * (1 if hib else -1)
            if logr.size:
                factor = float(np.exp(logr.mean()))
                lo, hi = (float(np.exp(x)) for x in bootstrap_ci(logr, "mean", level, n_boot, seed))
            else:
                factor = lo = hi = math.nan
            rows.append(
                {
                    "baseline": base,
                    "variant": var,
                    "metric": metric,
                    "stat": "paired_geomean",
                    "n_baseline": int(logr.size),
                    "n_variant": int(logr.size),
                    "factor": factor,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "significant": bool(math.isfinite(lo) and (lo > 1.0 or hi < 1.0)),
                    "verdict": verdict(factor, lo, hi, higher_is_better=hib, level=level),
                }
            )
    return pl.DataFrame(rows, schema=_CMP_SCHEMA)


_CMP_SCHEMA: dict[str, Any] = {
    "baseline": pl.String(),
    "variant": pl.String(),
    "metric": pl.String(),
    "stat": pl.String(),
    "n_baseline": pl.Int64(),
    "n_variant": pl.Int64(),
    "factor": pl.Float64(),
    "ci_lo": pl.Float64(),
    "ci_hi": pl.Float64(),
    "significant": pl.Boolean(),
    "verdict": pl.String(),
}

_CI_STATS: tuple[tuple[str, str], ...] = (
    ("mean", "mean"),
    ("p50", "median"),
    ("p90", "p90"),
    ("p95", "p95"),
    ("p99", "p99"),
)


def summary_with_ci(
    frame: pl.DataFrame,
    *,
    metrics: Sequence[str] = COMPARE_METRICS,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """`metrics.summarize` per variant plus `<stat>_lo` / `<stat>_hi` bootstrap bounds (mean, percentiles).

    Streaming metrics summarise live streams only; hits get `<metric> (cache hits)` rows of their own."""
    frame, metrics = split_stream_metrics(frame, metrics)
    present = [m for m in metrics if m in frame.columns]
    base = summarize(frame, by="variant", metrics=present)
    data = _measured(frame)
    extra: dict[str, list[float]] = {f"{name}_{end}": [] for name, _ in _CI_STATS for end in ("lo", "hi")}
    for variant, metric in zip(
        base.get_column("variant").to_list(), base.get_column("metric").to_list(), strict=True
    ):
        vals = _values(data, variant, metric) if variant is not None else np.zeros(0)
        for name, stat in _CI_STATS:
            st: Stat = stat  # type: ignore[assignment]
            lo, hi = bootstrap_ci(vals, stat=st, level=level, n_boot=n_boot, seed=seed)
            extra[f"{name}_lo"].append(lo)
            extra[f"{name}_hi"].append(hi)
    return base.with_columns(*[pl.Series(k, v, dtype=pl.Float64()) for k, v in extra.items()])


def split_stream_metrics(frame: pl.DataFrame, metrics: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """`frame` with each streaming metric kept for live streams only, plus a `<metric> (cache hits)` column
    holding the hits' values (when there are hits), and the metric list that goes with it."""
    out = list(metrics)
    stream = [m for m in metrics if m in frame.columns and is_stream_metric(m)]
    if not stream or "cache" not in frame.columns:
        return frame, out
    live, hit = live_rows(frame), _hit_rows(frame)
    any_hit = frame.select(hit.any()).item()
    cols = [pl.when(live).then(pl.col(m)).otherwise(None).alias(m) for m in stream]
    if any_hit:
        cols += [pl.when(hit).then(pl.col(m)).otherwise(None).alias(m + HIT_SUFFIX) for m in stream]
        for m in stream:
            out.insert(out.index(m) + 1, m + HIT_SUFFIX)
    return frame.with_columns(cols), out


@dataclass(frozen=True, slots=True)
class SLO:
    """Per-request service-level objectives: a request is good when it succeeded and meets every limit."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    itl_p99_ms: float | None = None

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def expr(self) -> pl.Expr:
        ok = pl.col("status") == "ok"
        for col, limit in self.limits().items():
            if col == "itl_p99_ms":
                cond = (
                    pl.col("itl_ms").list.eval(pl.element().quantile(0.99)).list.first().fill_null(0.0)
                    <= limit
                )
            elif col == "tpot_ms":
                # One-token answers have no TPOT; they cannot break a per-token limit.
                cond = pl.col(col).fill_null(0.0) <= limit
            else:
                cond = pl.col(col).fill_null(math.inf) <= limit
            ok = ok & cond
        return ok


def goodput(frame: pl.DataFrame, slo: SLO, *, level: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """Per variant: fraction of measured requests meeting every SLO limit (bootstrap CI) and good req/s."""
    data = _measured(frame).with_columns(slo.expr().alias("__good"))
    rows = []
    for variant in data.get_column("variant").unique(maintain_order=True).to_list():
        part = data.filter(pl.col("variant") == variant)
        good = part.get_column("__good").cast(pl.Float64).to_numpy()
        lo, hi = bootstrap_ci(good, stat="mean", level=level, seed=seed)
        span_s = _span_s(part)
        rows.append(
            {
                "variant": variant,
                "requests": part.height,
                "good": int(good.sum()),
                "goodput_fraction": float(good.mean()) if good.size else math.nan,
                "fraction_lo": lo,
                "fraction_hi": hi,
                "good_per_s": float(good.sum()) / span_s if span_s > 0 else math.nan,
                "slo": str(slo.limits()),
            }
        )
    return pl.DataFrame(rows)


def _span_s(part: pl.DataFrame) -> float:
    if part.height == 0 or "sent_ns" not in part.columns or "end_ns" not in part.columns:
        return math.nan
    lo, hi = part.get_column("sent_ns").min(), part.get_column("end_ns").max()
    if not isinstance(lo, int) or not isinstance(hi, int):
        return math.nan
    return (hi - lo) / 1e9


def client_warnings(
    cpu_samples: Sequence[float],
    frame: pl.DataFrame,
    *,
    cpu_limit: float = 90.0,
    lag_growth_ms: float = 5.0,
) -> list[str]:
    """Signs that the client, not the server, limited the run.

    - process CPU near one full core (the event loop is single-threaded) in most samples;
    - schedule lag that grows over the run: the dispatcher falls further behind its absolute schedule.
    """
    out: list[str] = []
    samples = np.asarray(cpu_samples, dtype=np.float64)
    if samples.size >= 3:
        busy = float(np.mean(samples >= cpu_limit))
        if busy >= 0.5:
            out.append(
                f"client CPU was >= {cpu_limit:.0f}% of one core in {busy:.0%} of samples "
                f"(median {np.median(samples):.0f}%): the client may be the bottleneck"
            )
    data = _measured(frame)
    if "dispatch_lag_ms" in data.columns and data.height >= 20:
        lag = (
            data.sort("scheduled_ms").get_column("dispatch_lag_ms").cast(pl.Float64).fill_null(0.0).to_numpy()
        )
        q = max(len(lag) // 4, 1)
        first, last = float(np.median(lag[:q])), float(np.median(lag[-q:]))
        if last - first > lag_growth_ms:
            out.append(
                f"schedule lag grew from {first:.1f} ms to {last:.1f} ms over the run: the client could not "
                "send at the offered rate"
            )
    return out
