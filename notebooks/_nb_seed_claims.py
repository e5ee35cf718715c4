"""Cells of notebooks/05_seed_claims.ipynb (imported by _build.py, which writes and runs the notebooks)."""

from __future__ import annotations

SEED_CLAIMS_SETUP = """\
import os
import time

import altair as alt
import polars as pl
from IPython.display import Markdown, display

from workbench import charts
from workbench.experiments.scenario_report import (
    SEED_CLAIMS, scenario_chart, scenario_markdown, seed_claims, seed_claims_markdown,
)
from workbench.experiments.scenarios import SCENARIOS, run_scenarios

# Charts shown in a cell render as SVG (vl-convert): no JavaScript, no CDN, and they stay in exported HTML.
_ = alt.renderers.enable("svg")
pl.Config.set_fmt_str_lengths(160)
pl.Config.set_tbl_rows(40)
"""

SEED_CLAIMS_NB: list[tuple[str, str]] = [
    (
        "md",
        """\
# The seed reports' claims, put to the test

Four reports seeded this workbench (rigrun, a Go service, OllamaMax, Vibe CLI). Each claims what an
optimization bought it: "5-15 ms saved per request by pooling", "cancellation 100 ms -> 1 ms", "sub-100 ms
cached responses", and so on. This notebook measures each claim that applies to a Python client, with the
toggle of `Optimizations` that implements it, and says **confirmed**, **refuted** or **not applicable**, with
the number.

1. every toggle in **its own scenario** (the workload where its effect can exist: pooling over TLS with short
   answers, caches on repeats, a cold model for prewarm...), on the built-in simulator in a child process,
   baseline and toggle interleaved: one row per toggle, with the improvement factor and its 95% CI;
2. the **seed-claims table** beside those numbers;
3. the same claims, where a real server can speak to them, on **llama.cpp** (`workbench.llm.LlamaServer`,
   Gemma 3 270M on this CPU) when the `llm` extra is installed; skipped with the reason otherwise.

Everything runs offline. Samples per arm are small (each scenario's own `n`, listed in the table: 4 to 48
requests or trials, 200 routing decisions), so the simulator part takes about a minute and a half on 2 cores
and the llama.cpp part about as much again. Outcomes: *confirmed* = an effect in the claimed direction whose
CI excludes 1 and reaches the claimed size (or an absolute figure that holds with the effect detected);
*refuted* = no effect, the opposite one, or one whose CI stays short of the claimed size; *not exercised* =
the run gave the toggle nothing to act on (no effect is claimed either way); *not applicable* = the claim is
about something a Python client does not have.""",
    ),
    ("code", SEED_CLAIMS_SETUP),
    ("md", "## 1. Each toggle in its scenario (simulator)"),
    (
        "code",
        """\
print("samples per arm:", ", ".join(f"{s.key} {s.n}" for s in SCENARIOS))
t0 = time.perf_counter()
sim = run_scenarios(progress=lambda msg: print(" ", msg))
print(f"{len(SCENARIOS)} scenarios in {time.perf_counter() - t0:.0f} s")
sim.table.select("toggle", "setting", "metric", "n_baseline", "n_toggle", "baseline_median",
                 "toggle_median", "factor", "ci_lo", "ci_hi", "verdict")""",
    ),
    (
        "md",
        """\
`factor` is the improvement (baseline/toggle for costs, toggle/baseline for rates): above 1 the toggle helps,
below 1 it hurts, and a CI that contains 1 is "no detectable difference". The chart draws only toggles that
acted in their scenario; one that did not would be named in the subtitle, not drawn as an effect.""",
    ),
    ("code", "sim.chart()"),
    ("code", "display(Markdown(scenario_markdown(sim.table)))"),
    ("md", "## 2. The seed claims against the simulator"),
    (
        "code",
        """\
claims = seed_claims(sim)
claims""",
    ),
    (
        "md",
        """\
## 3. The same claims on llama.cpp

Only the claims a real server can speak to run here: connection pooling, the exact cache, early
cancel, prewarm and the worker pool (`workbench.experiments.scenario_backend`). Answers are cut to a few
tokens so a CPU model serves them in seconds. Whether a toggle acted is read from the runner's facts of each
run: llama.cpp keeps its model loaded from the start, so a warm-up finds nothing to load. Set
`WORKBENCH_NB05_LLM=off` to skip this section.""",
    ),
    (
        "code",
        """\
from workbench.experiments.scenario_backend import REAL_SCENARIOS, run_on_backend

real = None
why_skipped = ""
if os.environ.get("WORKBENCH_NB05_LLM", "auto") == "off":
    why_skipped = "WORKBENCH_NB05_LLM=off"
else:
    try:
        from workbench.llm import LlamaServer, llm_extra_missing
    except ImportError as exc:
        why_skipped = f"workbench.llm is not importable ({exc})"
    else:
        missing = llm_extra_missing()
        if missing:
            why_skipped = f"the llm extra is not installed ({', '.join(missing)}): pip install -e '.[llm]'"
if why_skipped:
    print("llama.cpp column skipped:", why_skipped)
else:
    t0 = time.perf_counter()
    with LlamaServer() as server:
        print(f"llama.cpp (llama-cpp-python {server.version}) serving {server.model}, "
              f"{server.n_threads} thread(s), started in {server.startup_s:.1f} s")
        real = run_on_backend(server.backend(), server.model, n=6, progress=lambda msg: print(" ", msg))
    print(f"{len(REAL_SCENARIOS)} scenarios on llama.cpp in {time.perf_counter() - t0:.0f} s")
    display(real.table.select("toggle", "setting", "metric", "n_baseline", "n_toggle", "baseline_median",
                              "toggle_median", "factor", "ci_lo", "ci_hi", "verdict", "detail"))""",
    ),
    (
        "code",
        """\
claims = seed_claims(sim, others={"llama.cpp": real} if real is not None else None)
claims""",
    ),
    ("md", "## What it says"),
    (
        "code",
        """\
def reading(claims, outcome="outcome", measured="measured (simulator)", where="the simulator"):
    counts = claims.group_by(outcome).len().sort("len", descending=True)
    head = ", ".join(f"{r['len']} {r[outcome]}" for r in counts.iter_rows(named=True))
    lines = [f"On {where}, of {claims.height} claims: {head}."]
    for verdict in ("confirmed", "refuted", "not exercised", "not applicable"):
        rows = claims.filter(pl.col(outcome) == verdict)
        if rows.height:
            items = "; ".join(f"{r['source']}: {r['claim']} ({r[measured]})"
                              for r in rows.iter_rows(named=True))
            lines.append(f"- **{verdict}**: {items}")
    return "\\n".join(lines)


text = reading(claims)
if real is not None:
    text += "\\n\\n" + reading(claims.filter(pl.col("outcome (llama.cpp)") != "not measured"),
                               "outcome (llama.cpp)", "measured (llama.cpp)", "llama.cpp")
else:
    text += f"\\n\\nNo llama.cpp column: {why_skipped}."
text += (
    "\\n\\nA *refuted* claim is not a bug in the toggle: it means the effect a Go or TypeScript program "
    "reported does not carry over at the claimed size to a Python client on this machine (or, for a real "
    "server, that the server gives the toggle nothing to gain), and the number beside it says what does."
)
display(Markdown(text))""",
    ),
    (
        "md",
        """\
## Static renders

The cells below repeat the results as Markdown and PNG, so the exported report
(`workbench report notebooks/05_seed_claims.ipynb`) shows them without a kernel.""",
    ),
    (
        "code",
        """\
parts = [
    "### Seed claims",
    "",
    seed_claims_markdown(claims),
    "",
    text,
    "",
    "### Each toggle in its scenario (simulator)",
    "",
    scenario_markdown(sim.table),
]
if real is not None:
    parts += ["", "### On llama.cpp", "", scenario_markdown(real.table)]
display(Markdown("\\n".join(parts)))
display(charts.static(scenario_chart(sim.table), "png", scale=1))
if real is not None:
    display(charts.static(scenario_chart(real.table).properties(title="On llama.cpp"), "png", scale=1))""",
    ),
]
