"""RunResult: one frame of per-request measurements plus the configuration that produced it.

`save(path)` writes `<name>.parquet` and a `<name>.json` sidecar (full configuration, package versions,
machine), and `RunResult.load(path)` reads both back, so a comparison can be redone later or elsewhere.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from workbench._secrets import scrub
from workbench._types import StreamResult
from workbench.experiments.verdicts import (
    COMPARE_METRICS,
    SLO,
    client_warnings,
    comparisons,
    goodput,
    paired_comparisons,
    summary_with_ci,
)

__all__ = ["RunResult", "environment", "sweep_table"]

_PACKAGES = ("workbench", "httpx", "h2", "polars", "numpy", "orjson", "pyarrow", "altair", "psutil")


def environment() -> dict[str, Any]:
    """Machine and package versions, recorded with every saved result."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


@dataclass
class RunResult:
    """Per-request frame (`variant`, `repeat`, `warmup`, `scheduled_ms`, `sent_lag_ms`, `client_queue_ms`,
    every metric) plus `config` (what was asked) and `meta` (machine, timings, client CPU samples).

    `results` holds the raw StreamResults of this session (not saved; the frame is the durable record).
    """

    frame: pl.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    results: list[StreamResult] = field(default_factory=list, repr=False)

    # ---- views ----

    @property
    def variants(self) -> list[str]:
        vals = (
            self.frame.get_column("variant").unique(maintain_order=True).to_list()
            if self.frame.height
            else []
        )
        present = [v for v in vals if v is not None]
        # the order the user gave the variants in, not the (randomised) order they first ran in
        declared = [v for v in self.config.get("variants", {}) if v in present]
        return declared + [v for v in present if v not in declared]

    @property
    def measured(self) -> pl.DataFrame:
        """Rows that count: warm-up requests removed."""
        if "warmup" not in self.frame.columns:
            return self.frame
        return self.frame.filter(~pl.col("warmup").fill_null(False))

    def summary(
        self, metrics: Sequence[str] = COMPARE_METRICS, *, ci: bool = True, level: float = 0.95
    ) -> pl.DataFrame:
        """Per variant and metric: count, mean, p50, p90, p95, p99, max (+ bootstrap CI bounds when `ci`)."""
        if ci:
            out = summary_with_ci(self.frame, metrics=metrics, level=level)
        else:
            from workbench.metrics.summary import summarize

            out = summarize(self.frame, by="variant", metrics=[m for m in metrics if m in self.frame.columns])
        order = {v: i for i, v in enumerate(self.variants)}
        # stable sort: metrics keep their order within a variant
        return out.sort(pl.col("variant").replace_strict(order, default=len(order)), maintain_order=True)

    def comparisons(
        self,
        baseline: str | None = None,
        metrics: Sequence[str] = COMPARE_METRICS,
        stats: Sequence[str] = ("median", "p99"),
        level: float = 0.95,
    ) -> pl.DataFrame:
        """Each variant against the baseline (default: the first variant): factor, CI and verdict.

        `stats` may include "paired": the per-prompt paired comparison (`stats.paired_comparisons`).
        """
        plain = [s for s in stats if s != "paired"]
        seed = int(self.config.get("seed", 0))
        base = baseline or self.config.get("baseline")
        skip = self.not_exercised if base in (None, self.config.get("baseline")) else {}
        # what both comparisons are asked alike
        common: dict[str, Any] = {
            "baseline": base,
            "metrics": metrics,
            "level": level,
            "seed": seed,
            "order": self.variants,
            "not_exercised": skip,
        }
        out = comparisons(self.frame, stats=plain, **common)
        if "paired" not in stats:
            return out
        return pl.concat([out, paired_comparisons(self.frame, **common)])

    @property
    def not_exercised(self) -> dict[str, str]:
        """Variant -> why its comparison has no ratio: no toggle it changes could act in this run
        (`workbench.experiments.exercised`; `meta["exercised"]` holds the facts per toggle)."""
        from workbench.experiments.exercised import not_exercised_variants

        return not_exercised_variants(self.meta.get("exercised") or {}, self.config)

    def goodput(self, slo: SLO | None = None) -> pl.DataFrame:
        use = slo or SLO(**(self.config.get("slo") or {"ttft_ms": 500.0}))
        g = goodput(self.frame, use)
        order = {v: i for i, v in enumerate(self.variants)}
        return g.sort(pl.col("variant").replace_strict(order, default=len(order))) if g.height else g

    def throughput(self) -> pl.DataFrame:
        """Per variant: requests, errors, tokens, achieved send rate and tokens/s over its active span.

        With interleaving, variants share the wall clock, so these rates are per variant's own send span.
        """
        rows = []
        for v in self.variants:
            part = self.measured.filter(pl.col("variant") == v)
            sent = part.get_column("sent_ns").drop_nulls()
            ends = part.get_column("end_ns").drop_nulls()
            span_send = (int(sent.max()) - int(sent.min())) / 1e9 if sent.len() > 1 else math.nan  # type: ignore[arg-type]
            span = (int(ends.max()) - int(sent.min())) / 1e9 if sent.len() else math.nan  # type: ignore[arg-type]
            tokens = int(part.get_column("output_tokens").fill_null(0).sum())
            rows.append(
                {
                    "variant": v,
                    "requests": part.height,
                    "errors": int((part.get_column("status") != "ok").sum()),
                    "output_tokens": tokens,
                    "wall_s": span,
                    "achieved_rate": (sent.len() - 1) / span_send
                    if span_send and span_send > 0
                    else math.nan,
                    "tokens_per_s": tokens / span if span and span > 0 else math.nan,
                }
            )
        return pl.DataFrame(rows)

    @property
    def errors(self) -> pl.DataFrame:
        """Failed measured requests grouped by error kind and HTTP status: count, share_pct, variants and
        the first error message of each (status, URL, body excerpt, hint). Empty when nothing failed."""
        from workbench.metrics.frames import error_summary

        return error_summary(self.measured)

    @property
    def warnings(self) -> list[str]:
        return [
            *self.meta.get("warnings", []),
            *client_warnings(self.meta.get("cpu_samples", []), self.frame),
        ]

    def _repr_markdown_(self) -> str:
        from workbench.experiments.bench_report import markdown_report

        return markdown_report(self)

    # ---- persistence ----

    def save(self, path: str | Path) -> Path:
        """Write `<path>.parquet` + `<path>.json` (a directory gets `results.parquet`); return the path."""
        p = Path(path)
        if p.suffix != ".parquet":
            p = p / "results.parquet" if (p.is_dir() or not p.suffix) else p.with_suffix(".parquet")
        p.parent.mkdir(parents=True, exist_ok=True)
        self.frame.write_parquet(p)
        # scrub: URL credentials, secret-named keys and --api-key values never reach the file
        sidecar = {"config": scrub(self.config), "meta": scrub(self.meta), "format": "workbench.run/1"}
        p.with_suffix(".json").write_bytes(
            orjson.dumps(sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str)
        )
        return p

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        p = Path(path)
        if p.is_dir():
            p = p / "results.parquet"
        elif p.suffix != ".parquet":
            p = p.with_suffix(".parquet")
        frame = pl.read_parquet(p)
        side = p.with_suffix(".json")
        data = orjson.loads(side.read_bytes()) if side.exists() else {}
        return cls(frame=frame, config=data.get("config", {}), meta=data.get("meta", {}))


def sweep_table(runs: Sequence[RunResult]) -> pl.DataFrame:
    """One row per (arrival level, variant): achieved rate, tokens/s, TTFT p50/p99, p99 lag and queue."""
    rows = []
    for run in runs:
        tp = {r["variant"]: r for r in run.throughput().to_dicts()}
        for v in run.variants:
            part = run.measured.filter(pl.col("variant") == v)
            t = tp.get(v, {})
            rows.append(
                {
                    "arrival": run.config.get("arrival"),
                    "variant": v,
                    "requests": part.height,
                    "errors": t.get("errors"),
                    "achieved_rate": t.get("achieved_rate"),
                    "tokens_per_s": t.get("tokens_per_s"),
                    "ttft_p50_ms": part.get_column("ttft_ms").quantile(0.5),
                    "ttft_p99_ms": part.get_column("ttft_ms").quantile(0.99),
                    "sent_lag_p99_ms": part.get_column("sent_lag_ms").quantile(0.99),
                    "client_queue_p99_ms": part.get_column("client_queue_ms").quantile(0.99),
                    "client_cpu_p50_pct": _median(run.meta.get("cpu_samples", [])),
                }
            )
    return pl.DataFrame(rows)


def _median(values: Sequence[float]) -> float:
    return float(sorted(values)[len(values) // 2]) if values else math.nan
