"""Reports generated from measurements: a before/after table (Markdown and polars) and an offline HTML page.

The table has the rows the seed reports track (streaming tok/s, TTFT p50/p95/p99, cache lookup latency, cache
hit rate, connection reuse, connect ms, memory per request) plus what our runner adds (client queue, schedule
lag, errors). Latency rows carry the bootstrap verdict, so "faster" only appears when the CI excludes 1.

Streaming figures (tok/s, TPOT) come from live streams only; cache hits have a row of their own (a replay's
pace is not a stream's), and a TTFT/E2E verdict over a mix of hits and streams says so. In an ablation, a
variant whose toggles had nothing to act on shows "not exercised by this workload" instead of a ratio.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench.experiments.exercised import exercised_table
from workbench.experiments.verdicts import HIGHER_IS_BETTER, HITS, is_stream_metric, live_rows
from workbench.metrics.frames import error_summary, failure_line
from workbench.metrics.summary import percentile, ratio_ci

if TYPE_CHECKING:
    from workbench.experiments.results import RunResult

__all__ = [
    "before_after",
    "cache_table",
    "error_section",
    "exercised_section",
    "html_report",
    "markdown_report",
    "markdown_table",
]

Getter = Callable[[pl.DataFrame], float]


def _col(name: str) -> Callable[[pl.DataFrame], pl.Series]:
    def get(df: pl.DataFrame) -> pl.Series:
        if name not in df.columns:
            return pl.Series(name, [], dtype=pl.Float64())
        return df.get_column(name).cast(pl.Float64).drop_nulls()

    return get


def _pct(name: str, q: float) -> Getter:
    return lambda df: percentile(_col(name)(df), q)


def _mean(name: str) -> Getter:
    def get(df: pl.DataFrame) -> float:
        s = _col(name)(df)
        return float(s.mean()) if s.len() else math.nan  # type: ignore[arg-type]

    return get


def _live(get: Getter) -> Getter:
    return lambda df: get(df.filter(live_rows(df)))


def _hits(get: Getter) -> Getter:
    def on_hits(df: pl.DataFrame) -> float:
        if "cache" not in df.columns:
            return math.nan
        return get(df.filter(pl.col("cache").is_in(HITS).fill_null(False)))

    return on_hits


def _hit_rate(df: pl.DataFrame) -> float:
    if "cache" not in df.columns or df.height == 0:
        return math.nan
    on = df.filter(pl.col("cache") != "off")
    if on.height == 0:
        return math.nan  # no cache configured: a rate of 0% would read as "the cache never hit"
    return float(on.get_column("cache").is_in(["exact", "semantic"]).mean())  # type: ignore[arg-type]


def _hit_latency(df: pl.DataFrame) -> float:
    # A hit's TTFT is lookup + replay of the first chunk: what the user waits when the cache answers.
    if "cache" not in df.columns:
        return math.nan
    hits = df.filter(pl.col("cache").is_in(["exact", "semantic"]))
    col = "cache_lookup_ms" if "cache_lookup_ms" in df.columns else "ttft_ms"
    return percentile(_col(col)(hits), 50)


def _error_rate(df: pl.DataFrame) -> float:
    return float((df.get_column("status") != "ok").mean()) if df.height else math.nan  # type: ignore[arg-type]


def _mem_kib(df: pl.DataFrame) -> float:
    s = _col("rss_delta_bytes")(df)
    return float(s.mean()) / 1024 if s.len() else math.nan  # type: ignore[arg-type]


# (label, unit, getter, higher_is_better, metric for a bootstrap verdict or None, stat)
_ROWS: list[tuple[str, str, Getter, bool, str | None, str]] = [
    ("Streaming tok/s (p50, live streams)", "tok/s", _live(_pct("tokens_per_s", 50)), True, "tokens_per_s", "median"),  # noqa: E501
    ("TPOT p50 (live streams)", "ms", _live(_pct("tpot_ms", 50)), False, "tpot_ms", "median"),
    ("Cache-hit replay tok/s (p50, not streams)", "tok/s", _hits(_pct("tokens_per_s", 50)), True, None, ""),
    ("TTFT p50", "ms", _pct("ttft_ms", 50), False, "ttft_ms", "median"),
    ("TTFT p95", "ms", _pct("ttft_ms", 95), False, None, "p95"),
    ("TTFT p99", "ms", _pct("ttft_ms", 99), False, "ttft_ms", "p99"),
    ("TTFT p99 from schedule (incl. client queue)", "ms", _pct("ttft_from_schedule_ms", 99), False, None, ""),
    ("E2E p50", "ms", _pct("e2e_ms", 50), False, "e2e_ms", "median"),
    ("Cache lookup latency (hit TTFT p50)", "ms", _hit_latency, False, None, ""),
    ("Cache hit rate", "%", lambda df: 100 * _hit_rate(df), True, None, ""),
    ("Connection reuse rate", "%", lambda df: 100 * _mean("connection_reused")(df), True, None, ""),
    ("Connect ms (mean)", "ms", _mean("connect_ms"), False, None, ""),
    ("Memory per request (RSS delta)", "KiB", _mem_kib, False, None, ""),
    ("Client queue p99", "ms", _pct("client_queue_ms", 99), False, None, ""),
    ("Send lag p99 (scheduled → sent)", "ms", _pct("sent_lag_ms", 99), False, None, ""),
    ("Error rate", "%", lambda df: 100 * _error_rate(df), False, None, ""),
]


def _fmt(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "–"
    if unit == "%":
        return f"{x:.1f}%"
    if abs(x) >= 100:
        return f"{x:,.0f} {unit}"
    return f"{x:.2f} {unit}" if abs(x) < 10 else f"{x:.1f} {unit}"


def _improvement(before: float, after: float, higher: bool, unit: str) -> str:
    if not (math.isfinite(before) and math.isfinite(after)):
        return "–"
    if unit == "%":
        return f"{after - before:+.1f} pts"
    if before == 0 and after == 0:
        return "same"
    if after == 0:
        return "eliminated" if not higher else "–"
    if before == 0:
        return "new cost" if not higher else "–"
    factor = after / before if higher else before / after
    return f"{factor:.2f}x better" if factor >= 1 else f"{1 / factor:.2f}x worse"


def before_after(run: RunResult, before: str | None = None, after: str | None = None) -> pl.DataFrame:
    """metric | before | after | improvement | verdict, from the measured rows of two variants."""
    variants = run.variants
    b = before or str(run.config.get("baseline") or variants[0])
    a = after or next((v for v in variants if v != b), b)
    data = run.measured
    fb, fa = data.filter(pl.col("variant") == b), data.filter(pl.col("variant") == a)
    rows = []
    cache_meta = run.meta.get("cache", {})
    for label, unit, get, higher, metric, stat in _ROWS:
        vb, va = get(fb), get(fa)
        if label.startswith("Cache lookup") and (b in cache_meta or a in cache_meta):
            # the cache's own timing of each lookup (hits and misses), not a hit's time to first token
            label, unit = "Cache lookup latency (p50)", "µs"
            vb = cache_meta.get(b, {}).get("lookup_us_p50", math.nan)
            va = cache_meta.get(a, {}).get("lookup_us_p50", math.nan)
        verdict = ""
        if metric is not None and a != b:
            from workbench.experiments.verdicts import min_samples
            from workbench.experiments.verdicts import verdict as say

            sb, sa = fb, fa
            if is_stream_metric(metric):  # streams only: a replayed hit has its own pace
                sb, sa = fb.filter(live_rows(fb)), fa.filter(live_rows(fa))
            xb, xa = _col(metric)(sb), _col(metric)(sa)
            num, den = (xa, xb) if metric in HIGHER_IS_BETTER else (xb, xa)
            f, lo, hi = ratio_ci(num, den, stat=stat, seed=int(run.config.get("seed", 0)))  # type: ignore[arg-type]
            verdict = say(f, lo, hi, higher_is_better=metric in HIGHER_IS_BETTER)
            n, need = min(xa.len(), xb.len()), min_samples(stat)
            if n < need:
                verdict = f"too few samples for a {stat} verdict (n={n}, need {need})"
            mixed = _mix_note(sb) or _mix_note(sa)
            if mixed and verdict:
                verdict = f"{verdict} ({mixed})"
            skip = run.not_exercised.get(a) if b == run.config.get("baseline") else None
            if skip:
                verdict = f"not exercised by this workload: {skip}"
        rows.append(
            {
                "metric": label,
                "before": _fmt(vb, unit),
                "after": _fmt(va, unit),
                "improvement": _improvement(vb, va, higher, unit),
                "verdict": verdict,
                "before_value": vb,
                "after_value": va,
            }
        )
    if a != b and "prompt_id" in data.columns:
        from workbench.experiments.verdicts import paired_comparisons

        pair = data.filter(pl.col("variant").is_in([a, b]))
        for metric, label in (("ttft_ms", "TTFT, same prompt paired"), ("e2e_ms", "E2E, same prompt paired")):
            pc = paired_comparisons(pair, baseline=b, metrics=[metric], seed=int(run.config.get("seed", 0)))
            if pc.height:
                r = pc.row(0, named=True)
                rows.append(
                    {
                        "metric": f"{label} (geomean of {r['n_variant']} pairs)",
                        "before": "",
                        "after": "",
                        "improvement": _improvement(1.0, r["factor"], True, "x"),
                        "verdict": r["verdict"],
                        "before_value": math.nan,
                        "after_value": r["factor"],
                    }
                )
    return pl.DataFrame(rows).with_columns(
        pl.lit(b).alias("before_variant"), pl.lit(a).alias("after_variant")
    )


def _mix_note(df: pl.DataFrame) -> str:
    """Said beside a verdict whose rows pool cache hits with live streams."""
    if "cache" not in df.columns or df.height == 0:
        return ""
    n_hit = int(df.get_column("cache").is_in(HITS).sum())
    return f"pools {n_hit} cache hits with {df.height - n_hit} live streams" if 0 < n_hit < df.height else ""


def exercised_section(run: RunResult) -> pl.DataFrame:
    """toggle | exercised | evidence: whether each toggle a variant turns on had anything to act on."""
    return exercised_table(run.meta.get("exercised") or {})


def cache_table(run: RunResult) -> pl.DataFrame:
    """Per variant and expected relation (unique/repeat/paraphrase): how many requests got each cache outcome.

    A repeat should be an exact hit, a paraphrase a semantic hit and a unique prompt a miss; a semantic hit
    on a unique prompt is a false hit.
    """
    f = run.measured
    if "relation" not in f.columns or f.filter(pl.col("cache") != "off").height == 0:
        return pl.DataFrame()
    counts = f.group_by("variant", "relation").agg(
        pl.len().alias("requests"),
        *[(pl.col("cache") == k).sum().alias(k) for k in ("exact", "semantic", "miss", "bypass", "off")],
    )
    order = {v: i for i, v in enumerate(run.variants)}
    rel = {"unique": 0, "repeat": 1, "paraphrase": 2}
    return counts.sort(
        pl.col("variant").replace_strict(order, default=len(order)),
        pl.col("relation").replace_strict(rel, default=3),
    )


def markdown_table(frame: pl.DataFrame, columns: list[str] | None = None) -> str:
    cols = columns or frame.columns
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.select(cols).iter_rows():
        out.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def error_section(run: RunResult) -> tuple[str, pl.DataFrame] | None:
    """(one line: how many measured requests failed and why, table: error kinds with counts and the first
    message of each), or None when nothing failed. Reports put it first: a table of dashes needs a reason."""
    frame = run.measured
    line = failure_line(frame)
    if line is None:
        return None
    table = error_summary(frame).with_columns(
        pl.col("share_pct").round(1),
        pl.col("first_error").str.replace_all(r"\s+", " "),  # one table row per kind, whatever the body held
    )
    if frame.height and table.get_column("count").sum() == frame.height:
        line = f"{line[0].upper()}{line[1:]} No request succeeded: the tables below have no measurements."
    return line, table


def seed_claims_section(run: RunResult) -> tuple[str, pl.DataFrame] | None:
    """The seed reports' claims beside what the run's scenarios measured, when the run carries them:
    `meta["seed_claims"]` holds the rows of `scenario_report.seed_claims` (plain dicts, so a saved run keeps
    them)."""
    rows = run.meta.get("seed_claims")
    return ("Seed claims", pl.DataFrame(rows)) if rows else None


def _sections(run: RunResult) -> list[tuple[str, pl.DataFrame]]:
    out: list[tuple[str, pl.DataFrame]] = []
    base = str(run.config.get("baseline") or (run.variants[0] if run.variants else ""))
    others = [v for v in run.variants if v != base]
    if len(others) > 2:
        # an ablation: the full table for all-on only; every variant is in the compact table below
        others = [v for v in others if v == "all-on"] or others[:1]
    for v in others:
        t = before_after(run, base, v)
        out.append((f"{base} → {v}", t.select("metric", "before", "after", "improvement", "verdict")))
    if len(run.variants) == 1:
        t = before_after(run, base, base)
        out.append((base, t.select("metric", "before")))
    claims = seed_claims_section(run)
    return out + ([claims] if claims is not None else [])


def client_overhead(run: RunResult) -> tuple[bool, str] | None:
    """(client-limited?, one line): the client's event-loop lag and its share of ITL (issue 13)."""
    from workbench.experiments._monitor import CLIENT_SHARE_LIMIT, client_share

    share = client_share(run.frame)
    lag = run.meta.get("client_lag") or {}
    if not math.isfinite(share) and "client_lag_p99_ms" not in lag:
        return None
    limited = math.isfinite(share) and share > CLIENT_SHARE_LIMIT
    workers = run.config.get("workers", 1)
    text = (
        f"client overhead: event-loop lag p99 {float(lag.get('client_lag_p99_ms', math.nan)):.1f} ms, "
        f"client share {share:.0%} of ITL (client-limited above {CLIENT_SHARE_LIMIT:.0%})"
        + (f", {workers} worker processes" if workers != 1 else "")
    )
    if limited:
        return True, f"CLIENT-LIMITED run: {text}; TTFT and ITL here describe the client, not the server"
    return False, text


def markdown_report(run: RunResult) -> str:
    cfg = run.config
    wl = cfg.get("workload", {})
    lines = [
        "## Benchmark results",
        "",
        f"Workload: {wl.get('name', '?')} ({wl.get('n', '?')} prompts), "
        f"repeats {cfg.get('repeats')}, arrival {cfg.get('arrival')}, interleaved {cfg.get('interleave')}, "
        f"warm-up {cfg.get('warmup')} per variant (excluded).",
        "",
    ]
    overhead = client_overhead(run)
    if overhead is not None:
        lines += [f"**{overhead[1]}**" if overhead[0] else overhead[1], ""]
    errors = error_section(run)
    if errors is not None:
        lines += ["### Errors", "", f"**{errors[0]}**", "", markdown_table(errors[1]), ""]
    for title, table in _sections(run):
        lines += [f"### {title}", "", markdown_table(table), ""]
    if len(run.variants) > 3:
        lines += ["### Every variant against the baseline (medians)", "", markdown_table(_compact(run)), ""]
    ex = exercised_section(run)
    if ex.height:
        lines += ["### Toggles exercised by this workload", "", markdown_table(ex), ""]
    ct = cache_table(run)
    if ct.height:
        lines += ["### Cache outcome by prompt relation", "", markdown_table(ct), ""]
    warn = run.warnings
    if warn:
        lines += ["### Warnings", ""] + [f"- {w}" for w in warn] + [""]
    return "\n".join(lines)


def _compact(run: RunResult) -> pl.DataFrame:
    cmp = run.comparisons(metrics=["ttft_ms", "e2e_ms", "tokens_per_s"], stats=["median"])
    return cmp.select(
        "variant",
        "metric",
        pl.col("factor").round(3),
        pl.col("ci_lo").round(3),
        pl.col("ci_hi").round(3),
        "verdict",
    )


def _html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}td:last-child{text-align:left}.warn{color:#a40}"
)


def html_report(run: RunResult, *, charts: list[str] | None = None, title: str = "workbench bench") -> str:
    """A self-contained page (no network): tables plus inline SVG charts (pass SVG strings in `charts`)."""
    cfg = run.config
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p>"
        + html.escape(
            f"workload {cfg.get('workload', {}).get('name')} · repeats {cfg.get('repeats')} · arrival "
            f"{cfg.get('arrival')} · interleaved {cfg.get('interleave')} · "
            f"warm-up {cfg.get('warmup')} (excluded)"
        )
        + "</p>",
    ]
    overhead = client_overhead(run)
    if overhead is not None:
        cls = " class='warn'" if overhead[0] else ""
        parts.append(
            f"<p{cls}>{'<strong>' if overhead[0] else ''}{html.escape(overhead[1])}"
            f"{'</strong>' if overhead[0] else ''}</p>"
        )
    errors = error_section(run)
    if errors is not None:
        parts += [
            "<h2>Errors</h2>",
            f"<p class='warn'><strong>{html.escape(errors[0])}</strong></p>",
            _html_table(errors[1]),
        ]
    for section, table in _sections(run):
        parts += [f"<h2>{html.escape(section)}</h2>", _html_table(table)]
    if len(run.variants) > 3:
        parts += ["<h2>Every variant against the baseline (medians)</h2>", _html_table(_compact(run))]
    parts += ["<h2>Summary (95% bootstrap CI)</h2>", _html_table(_summary_view(run))]
    ex = exercised_section(run)
    if ex.height:
        parts += ["<h2>Toggles exercised by this workload</h2>", _html_table(ex)]
    ct = cache_table(run)
    if ct.height:
        parts += ["<h2>Cache outcome by prompt relation</h2>", _html_table(ct)]
    parts += [
        "<h2>Goodput</h2>",
        _html_table(run.goodput()),
        "<h2>Throughput</h2>",
        _html_table(run.throughput()),
    ]
    for w in run.warnings:
        parts.append(f"<p class='warn'>⚠ {html.escape(w)}</p>")
    for svg in charts or []:
        parts.append(f"<div class='chart'>{svg}</div>")
    env = run.meta.get("environment", {})
    parts.append(
        "<p><small>"
        + html.escape(
            f"python {env.get('python')} · {env.get('platform')} · {env.get('cpu_count')} CPUs · "
            f"wall {run.meta.get('wall_s', math.nan):.1f} s"
        )
        + "</small></p></body></html>"
    )
    return "".join(parts)


def _summary_view(run: RunResult) -> pl.DataFrame:
    s = run.summary()
    return s.select(
        "variant",
        "metric",
        "count",
        pl.col("mean").round(2),
        pl.col("p50").round(2),
        pl.format("{}–{}", pl.col("p50_lo").round(2), pl.col("p50_hi").round(2)).alias("p50 CI"),
        pl.col("p90").round(2),
        pl.col("p95").round(2),
        pl.col("p99").round(2),
        pl.format("{}–{}", pl.col("p99_lo").round(2), pl.col("p99_hi").round(2)).alias("p99 CI"),
    )
