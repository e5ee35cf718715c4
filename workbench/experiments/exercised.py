"""Did each toggle get a chance to act in this run? Decided from facts of the run, not from its name.

A toggle can only change a measurement when the workload gives it something to do: a cache needs a repeat,
early cancel a stopped stream, prewarm a cold model, the router's fast path a policy-forced prompt, the UI
toggles a view. An ablation that charts a ratio for a toggle that never acted charts noise as an effect, so
reports say "not exercised by this workload" with the evidence instead.

    facts = exercised(run.frame, run.meta, run.config)   # toggle -> {exercised, evidence, variants}
    skip = not_exercised_variants(facts, run.config)     # variant -> why its comparison has no ratio
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from workbench.optimizations import Optimizations

__all__ = ["exercised", "exercised_table", "not_exercised_variants"]

_LIVE = ("off", "miss", "bypass")
Check = Callable[[pl.DataFrame, Mapping[str, Any], Mapping[str, Any], list[str]], tuple[bool, str]]


def _rows(frame: pl.DataFrame, variants: Sequence[str], *, measured: bool = True) -> pl.DataFrame:
    f = frame.filter(pl.col("variant").is_in(list(variants)))
    if measured and "warmup" in f.columns:
        f = f.filter(~pl.col("warmup").fill_null(False))
    return f


def _live(f: pl.DataFrame) -> pl.DataFrame:
    if "cache" not in f.columns:
        return f
    return f.filter(pl.col("cache").is_null() | pl.col("cache").is_in(_LIVE))


def _count(f: pl.DataFrame, expr: pl.Expr) -> int:
    return int(f.select(expr.fill_null(False).sum()).item() or 0) if f.height else 0


def _pool(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    live = _live(_rows(f, on))
    if "connection_reused" not in live.columns or live.height < 2:
        return False, "fewer than two live requests: no connection to reuse"
    k = _count(live, pl.col("connection_reused"))
    return k > 0, f"{k} of {live.height} live requests reused a connection"


def _http2(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    rows = _live(_rows(f, on))
    if "http_version" not in rows.columns or rows.height == 0:
        return False, "no live request"
    versions = sorted({str(v) for v in rows.get_column("http_version").drop_nulls().to_list()})
    k = _count(rows, pl.col("http_version").str.contains("2"))
    if k:
        return True, f"{k} of {rows.height} live requests spoke HTTP/2"
    return (
        False,
        f"the server answered {', '.join(versions) or 'no'} HTTP version(s) only: HTTP/2 not offered",
    )


def _parse(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    rows = _live(_rows(f, on)).filter(pl.col("n_chunks") > 0)
    if rows.height == 0:
        return False, "no live stream was parsed (every answer came from a cache or failed)"
    return True, f"{rows.height} live streams parsed"


def _cancel(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    rows = _rows(f, on)
    k = _count(rows, pl.col("status") == "cancelled")
    if k:
        return True, f"{k} streams were stopped before their end"
    return False, "no stream was stopped before its end: nothing to cancel"


def _cache_kind(kind: str, missing: str) -> Check:
    def check(
        f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
    ) -> tuple[bool, str]:
        rows = _rows(f, on)
        k = _count(rows, pl.col("cache") == kind) if "cache" in rows.columns else 0
        return (True, f"{k} {kind} hits") if k else (False, missing)

    return check


def _disk(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    # A hit on a prompt this variant had not sent before in this process cannot come from the memory tier:
    # the disk tier answered it, from entries an earlier run (another process) left in the folder.
    k = 0
    for v in on:
        rows = _rows(f, [v], measured=False)
        if "cache" not in rows.columns or rows.height == 0:
            continue
        first = rows.sort("sent_ns").filter(pl.col("prompt").is_first_distinct())
        k += _count(first, pl.col("cache") == "exact")
    if k:
        return True, f"{k} first-time prompts answered from the disk tier (filled by an earlier run)"
    persistent = [v for v, d in (meta.get("disk_cache") or {}).items() if d.get("persistent")]
    where = "its folder was empty at the start" if persistent else "its folder was temporary (no cache_dir=)"
    return (
        False,
        f"every hit could have come from the memory tier; {where}: the disk tier acts across a restart",
    )


def _prewarm(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    records = [(v, r) for v in on for r in (meta.get("prewarm") or {}).get(v, [])]
    if not records:
        return False, "no warm-up request was sent"
    notes = []
    for v, rec in records:
        ttft = rec.get("ttft_ms")
        live = _live(_rows(f, [v])).get_column("ttft_ms").drop_nulls()
        med = float(live.median()) if live.len() else math.nan  # type: ignore[arg-type]
        if ttft is None or not math.isfinite(med):
            continue
        # A warm-up that loaded the model waits for the load on top of a normal first token.
        if ttft - med > max(med, 20.0):
            return (
                True,
                f"the warm-up of {rec.get('model')} ({v}) took {ttft:.0f} ms to first token vs a "
                f"median of {med:.0f} ms: it loaded a cold model",
            )
        notes.append(f"{ttft:.0f} ms vs median {med:.0f} ms")
    return (
        False,
        f"every warm-up found the model loaded ({'; '.join(notes[:3]) or 'no timing'}): no cold model",
    )


def _concurrency(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    arrival = str(config.get("arrival", "sequential"))
    if arrival != "sequential":
        return (
            False,
            f"the arrival {arrival} sets the load for every variant; the pool acts with the sequential one",
        )
    most = max((int((meta.get("max_in_flight") or {}).get(v, 0)) for v in on), default=0)
    if most > 1:
        return True, f"up to {most} requests of one variant in flight"
    return False, "never more than one request in flight"


def _router(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    rows = _rows(f, on)
    if (
        "route_fast_path" not in rows.columns
        or rows.get_column("route_fast_path").null_count() == rows.height
    ):
        return False, "no router= given: nothing was routed"
    k = _count(rows, pl.col("route_fast_path"))
    if k:
        return True, f"{k} policy-forced requests skipped classification"
    return False, "no request was forced by the router's policy: the fast path had nothing to skip"


def _view(
    f: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any], on: list[str]
) -> tuple[bool, str]:
    # The runner's headless `ui_messages` / `ui_bytes` / `ui_cpu_ms` columns always show what the view toggles
    # change (the front end's cost, compared per variant on those columns); on the wire and on the timing
    # metrics they act only when a live view rendered the stream (`view_*` columns, the Dashboard's runs).
    rows = _rows(f, on)
    cols = [c for c in rows.columns if c.startswith("view_")]
    k = max((rows.height - rows.get_column(c).null_count() for c in cols), default=0)
    if k:
        return True, f"{k} requests rendered through a live view"
    return False, (
        "no live view in this run: the timing metrics cannot show it; its effect is in the ui_messages, "
        "ui_bytes and ui_cpu_ms columns"
    )


_CHECKS: dict[str, Check] = {
    "connection_pool": _pool,
    "http2": _http2,
    "fast_parse": _parse,
    "coalesce_ui": _view,
    "incremental_render": _view,
    "exact_cache": _cache_kind("exact", "no exact hit: no request repeated one already answered"),
    "semantic_cache": _cache_kind(
        "semantic", "no semantic hit: no paraphrase close enough to a stored answer"
    ),
    "disk_cache": _disk,
    "prewarm": _prewarm,
    "concurrency": _concurrency,
    "early_cancel": _cancel,
    "router_fast_path": _router,
}


def exercised(
    frame: pl.DataFrame, meta: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """For each toggle some variant turns on: whether the run gave it something to act on, and the fact."""
    base = Optimizations().as_dict()
    variants: Mapping[str, Mapping[str, Any]] = config.get("variants") or {}
    out: dict[str, dict[str, Any]] = {}
    if frame.height == 0 or "variant" not in frame.columns:
        return out
    for field in dataclasses.fields(Optimizations):
        name = field.name
        on = [v for v, d in variants.items() if d.get(name, base[name]) != base[name]]
        if not on:
            continue
        ok, why = _CHECKS[name](frame, meta, config, on)
        out[name] = {"exercised": ok, "evidence": why, "variants": on}
    return out


def _reference(variant: str, names: Sequence[str], baseline: str) -> str:
    # An ablation's "-name" is all-on without one toggle: what it says about that toggle is against all-on.
    if variant.startswith("-") and "all-on" in names:
        return "all-on"
    return baseline


def not_exercised_variants(
    facts: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any]
) -> dict[str, str]:
    """Variant -> why it gets no ratio: every toggle it changes (against the baseline, or against all-on for
    an ablation's "-name") had nothing to act on in this run."""
    variants: Mapping[str, Mapping[str, Any]] = config.get("variants") or {}
    names = list(variants)
    if not names:
        return {}
    baseline = str(config.get("baseline") or names[0])
    out: dict[str, str] = {}
    for v in names:
        ref = _reference(v, names, baseline)
        if v == ref or ref not in variants:
            continue
        diff = [k for k, val in variants[v].items() if variants[ref].get(k) != val]
        if diff and all(k in facts and not facts[k]["exercised"] for k in diff):
            out[v] = "; ".join(f"{k}: {facts[k]['evidence']}" for k in diff)
    return out


def exercised_table(facts: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """One row per toggle: toggle, exercised, evidence."""
    return pl.DataFrame(
        {
            "toggle": list(facts),
            "exercised": [bool(f["exercised"]) for f in facts.values()],
            "evidence": [str(f["evidence"]) for f in facts.values()],
        },
        schema={"toggle": pl.String(), "exercised": pl.Boolean(), "evidence": pl.String()},
    )
