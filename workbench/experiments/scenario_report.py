"""The scenario table as Markdown and a chart, and the seed reports' claims put beside what was measured.

`seed_claims(result)` lists each claim of the four seed reports that a Python client can test (and the ones
it cannot, marked "not applicable" with the reason), mapped to its toggle's scenario, with the measured
number and an outcome:

* confirmed: an effect in the claimed direction is detected (CI excludes 1) and reaches the claimed size
  (the CI's upper end reaches the claimed lower bound), or an absolute claim holds for the measured median;
* refuted: no effect detected, the opposite one, an effect whose CI stays below the claimed size, or an
  absolute claim the median misses;
* not exercised: the scenario did not make the toggle act (nothing to judge);
* not applicable: the claim is about something a Python client does not have (Go lock contention, a
  server's API tuning, batch embedding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from workbench.experiments.scenarios import ScenarioResult

__all__ = [
    "SEED_CLAIMS",
    "Claim",
    "scenario_chart",
    "scenario_markdown",
    "seed_claims",
    "seed_claims_markdown",
]


@dataclass(frozen=True, slots=True)
class Claim:
    source: str  # which seed report
    claim: str  # the claim, paraphrased with its numbers
    toggle: str  # the Optimizations field it maps to ("" when none)
    scenario: str  # scenario key ("" when not applicable)
    kind: str  # "factor" (>= min_factor), "max" (number <= limit), "min" (number >= limit), "fewer", "na"
    limit: float = float("nan")
    number: str = ""  # key in Measured.numbers for "max"/"min" (or "base"/"on" pair for "fewer")
    why_na: str = ""


SEED_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "rigrun",
        "streaming 833 -> 1,111 tok/s (+33%) from reader pooling",
        "fast_parse",
        "parse",
        "factor",
        1.33,
    ),
    Claim(
        "rigrun", "15-25% faster stream handling from decoder reuse", "fast_parse", "parse", "factor", 1.15
    ),
    Claim("rigrun", "cache lookup 250 -> 80 µs", "exact_cache", "exact", "max", 80.0, "hit_ttft_us"),
    Claim(
        "rigrun",
        "5-15 ms saved per request by connection pooling",
        "connection_pool",
        "pool",
        "min",
        5.0,
        "saved_ms",
    ),
    Claim(
        "rigrun",
        "80-90% less render work (incremental viewport)",
        "incremental_render",
        "incremental",
        "fewer",
        0.80,
    ),
    Claim(
        "rigrun",
        "2-3x cache throughput under concurrent access (atomic stats)",
        "exact_cache",
        "",
        "na",
        why_na="Go lock contention on counters; CPython's cache lookups are serialised by the GIL either way",
    ),
    Claim(
        "Go service",
        "concurrent requests/s 50 -> 200 from a worker pool",
        "concurrency",
        "concurrency",
        "factor",
        4.0,
    ),
    Claim(
        "Go service",
        "cache key generation 3.3x faster",
        "",
        "",
        "na",
        why_na="no toggle: the workbench has one key function (its cost is inside the cache hit's µs)",
    ),
    Claim(
        "Go service",
        "cancellation response 100 ms -> 1 ms",
        "early_cancel",
        "cancel",
        "max",
        1.0,
        "cancel_stop_ms",
    ),
    Claim(
        "OllamaMax",
        "API latency 250 -> 150 ms (server-side tuning)",
        "",
        "",
        "na",
        why_na="a change inside their API server, not something a client toggles",
    ),
    Claim(
        "OllamaMax",
        "16 ms UI batching (~60 updates/s) instead of one per message",
        "coalesce_ui",
        "coalesce",
        "fewer",
        0.5,
    ),
    Claim(
        "Vibe CLI",
        "3-5x faster embedding with larger batches",
        "semantic_cache",
        "",
        "na",
        why_na="the semantic tier embeds one prompt per lookup; there is no batch to enlarge",
    ),
    Claim("Vibe CLI", "zero cold start with pre-warming", "prewarm", "prewarm", "max", 100.0, "warm_ttft_ms"),
    Claim("Vibe CLI", "sub-100 ms cached responses", "exact_cache", "exact", "max", 100.0, "hit_e2e_ms"),
    Claim(
        "Vibe CLI", "HTTP/2 multiplexing speeds concurrent inference calls", "http2", "http2", "factor", 1.0
    ),
)


def _judge(c: Claim, row: dict[str, Any] | None, numbers: dict[str, float]) -> tuple[str, str]:
    """(outcome, measured) for one claim."""
    if c.kind == "na":
        return "not applicable", c.why_na
    if row is None:
        return "not run", f"scenario {c.scenario!r} was not in this run"
    if row["verdict"] == "not exercised":
        return "not exercised", str(row["detail"])
    f, lo, hi = (row.get(k) for k in ("factor", "ci_lo", "ci_hi"))
    if not all(isinstance(x, float) and math.isfinite(x) for x in (f, lo, hi)):
        return "not run", "not enough data"
    assert isinstance(f, float) and isinstance(lo, float) and isinstance(hi, float)
    ratio = f"{f:.2f}x (95% CI {lo:.2f}-{hi:.2f})"
    if c.kind == "factor":
        ok = lo > 1.0 and hi >= c.limit
        return ("confirmed" if ok else "refuted"), ratio
    if c.kind == "fewer":
        base, on = row["baseline_median"], row["toggle_median"]
        cut = 1.0 - on / base if base else float("nan")
        ok = lo > 1.0 and cut >= c.limit
        return ("confirmed" if ok else "refuted"), f"{cut:.0%} less ({base:,.0f} -> {on:,.0f}); {ratio}"
    value = numbers.get(c.number, float("nan"))
    if not math.isfinite(value):
        return "not run", f"{c.number} not measured"
    # an absolute figure counts only with the toggle's effect detected (CI above 1) in the same run
    ok = lo > 1.0 and (value <= c.limit if c.kind == "max" else value >= c.limit)
    return ("confirmed" if ok else "refuted"), f"{c.number} = {value:,.2f}; {ratio}"


def seed_claims(result: ScenarioResult, others: Mapping[str, ScenarioResult] | None = None) -> pl.DataFrame:
    """One row per seed claim: source, claim, toggle, scenario, measured, outcome.

    `others`: label -> results of the same scenarios on another backend (e.g. `{"llama.cpp": ...}` from
    `scenario_backend.run_on_backend`); each adds `measured (<label>)` and `outcome (<label>)` columns. A
    claim whose scenario did not run there says "not measured" with the reason.
    """
    out = [
        {
            "source": c.source,
            "claim": c.claim,
            "toggle": c.toggle or "-",
            "scenario": c.scenario or "-",
            "measured (simulator)": measured,
            "outcome": outcome,
        }
        for c, (outcome, measured) in zip(SEED_CLAIMS, _judge_all(result), strict=True)
    ]
    for label, res in (others or {}).items():
        ran = set(res.table.get_column("scenario").to_list())
        for row, c, (outcome, measured) in zip(out, SEED_CLAIMS, _judge_all(res), strict=True):
            if c.kind != "na" and c.scenario not in ran:
                outcome, measured = "not measured", f"scenario {c.scenario!r} not run on {label}"
            row[f"measured ({label})"], row[f"outcome ({label})"] = measured, outcome
    return pl.DataFrame(out)


def _judge_all(result: ScenarioResult) -> list[tuple[str, str]]:
    rows_by_key = {r["scenario"]: r for r in result.table.iter_rows(named=True)}
    out = []
    for c in SEED_CLAIMS:
        m = result.measured.get(c.scenario)
        out.append(_judge(c, rows_by_key.get(c.scenario), m.numbers if m is not None else {}))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v).replace("|", "/")


def _table(frame: pl.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.select(columns).iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def scenario_markdown(table: pl.DataFrame) -> str:
    """The one-row-per-toggle table: the factor is the improvement (> 1: the toggle helps)."""
    t = table.with_columns(
        pl.format("{} ({}-{})", pl.col("factor").round(2), pl.col("ci_lo").round(2), pl.col("ci_hi").round(2))
        .fill_null("-")
        .alias("factor (95% CI)"),
        (pl.col("n_baseline").cast(pl.String) + "/" + pl.col("n_toggle").cast(pl.String)).alias("n"),
    )
    cols = [
        "toggle",
        "setting",
        "metric",
        "n",
        "baseline_median",
        "toggle_median",
        "factor (95% CI)",
        "verdict",
        "detail",
    ]
    return _table(t, cols)


def seed_claims_markdown(claims: pl.DataFrame) -> str:
    return _table(claims, list(claims.columns))


def scenario_chart(table: pl.DataFrame) -> Any:
    """The improvement factor with its 95% CI per toggle, log axis, 1 marked; toggles that did not act
    are listed in the title, not drawn as an effect."""
    import altair as alt

    ok = table.filter(pl.col("verdict") != "not exercised").drop_nulls(["factor", "ci_lo", "ci_hi"])
    ok = ok.filter(pl.col("factor").is_finite() & (pl.col("ci_lo") > 0))
    skipped = table.filter(pl.col("verdict") == "not exercised").get_column("toggle").to_list()
    title = "Each toggle in its scenario: improvement factor (> 1 = better), 95% CI"
    sub = [f"not exercised (not drawn): {', '.join(skipped)}"] if skipped else []
    # inline values (no pandas here): the encodings carry their types
    data: Any = alt.InlineData(
        values=ok.select("toggle", "metric", "factor", "ci_lo", "ci_hi", "verdict").to_dicts()
    )
    y = alt.Y("toggle:N", sort=None, title=None)
    x_scale = alt.Scale(type="log")
    base = alt.Chart(data)
    bars = base.mark_rule(strokeWidth=2).encode(
        y=y, x=alt.X("ci_lo:Q", scale=x_scale, title="improvement factor (log)"), x2="ci_hi:Q"
    )
    points = base.mark_point(filled=True, size=70).encode(
        y=y,
        x=alt.X("factor:Q", scale=x_scale),
        color=alt.Color("verdict:N", title="verdict"),
        tooltip=["toggle:N", "metric:N", "factor:Q", "ci_lo:Q", "ci_hi:Q", "verdict:N"],
    )
    one = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(x=alt.datum(1.0))
    return (bars + points + one).properties(
        title=alt.TitleParams(title, subtitle=sub), width=480, height=alt.Step(24)
    )
