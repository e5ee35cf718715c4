"""`workbench compare RESULT_A RESULT_B`: is B better than A? Two saved runs, same variant names compared.

    workbench compare data/results/before data/results/after
    workbench compare a.parquet b.parquet --variant all --metrics ttft_ms,e2e_ms --html diff.html

For every variant present in both runs (or the one named), A's rows are the baseline and B's the candidate;
the verdicts use the same bootstrap as `RunResult.comparisons()`. Runs made on different machines or
configurations are flagged, because then a difference may come from the setting and not the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from workbench.experiments.bench_report import before_after, html_report, markdown_table
from workbench.experiments.results import RunResult
from workbench.experiments.verdicts import COMPARE_METRICS, comparisons
from workbench.metrics.frames import failure_line

__all__ = ["compare_runs", "main"]


def compare_runs(
    a: RunResult,
    b: RunResult,
    *,
    variant: str | None = None,
    metrics: tuple[str, ...] = COMPARE_METRICS,
    label_a: str = "A",
    label_b: str = "B",
) -> tuple[pl.DataFrame, list[tuple[str, RunResult]]]:
    """Comparisons (B's variant against A's, per common variant) and a merged RunResult per pair."""
    if variant is not None:
        pairs = [(variant, variant)]
    else:
        common = [v for v in a.variants if v in b.variants]
        pairs = [(v, v) for v in common] or [(a.variants[0], b.variants[0])]
    tables, merged = [], []
    for va, vb in pairs:
        fa = a.measured.filter(pl.col("variant") == va).with_columns(
            pl.lit(f"{label_a}:{va}").alias("variant")
        )
        fb = b.measured.filter(pl.col("variant") == vb).with_columns(
            pl.lit(f"{label_b}:{vb}").alias("variant")
        )
        if fa.height == 0 or fb.height == 0:
            raise SystemExit(f"variant {va!r} / {vb!r} has no measured rows in one of the runs")
        frame = pl.concat([fa, fb], how="diagonal_relaxed")
        cfg = {**a.config, "baseline": f"{label_a}:{va}"}
        run = RunResult(frame=frame, config=cfg, meta=b.meta)
        merged.append((va if va == vb else f"{va} (A) → {vb} (B)", run))
        tables.append(comparisons(frame, baseline=f"{label_a}:{va}", metrics=list(metrics)))
    return pl.concat(tables) if tables else pl.DataFrame(), merged


def _differences(a: RunResult, b: RunResult) -> list[str]:
    notes = []
    ea, eb = a.meta.get("environment", {}), b.meta.get("environment", {})
    for key in ("platform", "python", "cpu_count"):
        if ea.get(key) != eb.get(key):
            notes.append(f"{key} differs: {ea.get(key)} vs {eb.get(key)}")
    for key in ("arrival", "repeats", "workload", "backend"):
        if a.config.get(key) != b.config.get(key):
            notes.append(f"configuration '{key}' differs between the runs")
    return notes


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="workbench compare", description=__doc__.split("\n\n")[0])
    p.add_argument("result_a", help="baseline run: a results directory or .parquet file")
    p.add_argument("result_b", help="candidate run")
    p.add_argument("--variant", help="compare only this variant (default: every variant in both runs)")
    p.add_argument("--metrics", default=",".join(COMPARE_METRICS))
    p.add_argument("--html", help="also write an HTML report here")
    args = p.parse_args(argv)
    try:
        a, b = RunResult.load(args.result_a), RunResult.load(args.result_b)
    except (OSError, pl.exceptions.PolarsError) as exc:
        print(f"workbench compare: cannot read results: {exc}", file=sys.stderr)
        return 2
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    table, merged = compare_runs(a, b, variant=args.variant, metrics=metrics)
    print(f"# {args.result_a} (A) vs {args.result_b} (B)\n")
    for note in _differences(a, b):
        print(f"- note: {note}")
    for label, run in (("A", a), ("B", b)):
        failed = failure_line(run.measured)  # factors cover only the requests that worked
        if failed is not None:
            print(f"- errors in {label}: {failed}")
    for name, run in merged:
        print(f"\n## {name}\n")
        ba = before_after(run)
        print(markdown_table(ba.select("metric", "before", "after", "improvement", "verdict")))
    print("\n## All comparisons (factor > 1: B is better)\n")
    print(markdown_table(table.select("variant", "metric", "stat", "factor", "ci_lo", "ci_hi", "verdict")))
    if args.html:
        pages = [html_report(run, title=f"compare · {name}") for name, run in merged]
        Path(args.html).write_text("\n".join(pages))
        print(f"\nwrote {args.html}")
    return 0
