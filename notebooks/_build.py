"""Write the workbench notebooks (cells as plain text here, so reviews read like code).

    .venv/bin/python notebooks/_build.py            # write the .ipynb files without outputs
    .venv/bin/python notebooks/_build.py --execute  # then run each with `workbench report` and save outputs

Each notebook runs top to bottom on the embedded simulator with no network and ends with static renders
(vl-convert PNG, Markdown) so its exported HTML (`workbench report`) shows the results without a kernel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import nbformat.v4 as v4

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "data" / "results"

SETUP = """\
import hashlib

import altair as alt
import polars as pl
from IPython.display import Markdown, display

from workbench import Backend, Optimizations, Request
from workbench.simulator import Profile, Simulator
from workbench.widgets import charts

# Charts shown in a cell render as SVG (vl-convert): no JavaScript, no CDN, and they stay in exported HTML.
_ = alt.renderers.enable("svg")
"""

QUICKSTART: list[tuple[str, str]] = [
    (
        "md",
        """\
# Quickstart: stream, toggle, compare

This notebook runs entirely on the **embedded simulator** (a real HTTP server on 127.0.0.1 that speaks the
Ollama and OpenAI streaming protocols), so it needs no model and no network. It takes about half a minute.

1. stream one answer live into a `StreamView`,
2. flip optimizations in the `OptimizationPanel`,
3. compare the baseline with everything on, with live charts and a verdict.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from workbench.client import AsyncClient
from workbench.experiments import Workload, compare
from workbench.metrics import chunks_frame, to_frame
from workbench.widgets import OptimizationPanel, StreamView
from workbench.widgets.live_charts import LiveCharts

# 150 ms to the first token, then ~20 ms per token: slow enough to watch the text arrive.
sim = Simulator(Profile(ttft_ms=150, token_delay_ms=20, seed=1)).start()
backend = Backend(sim.url, protocol="openai", name="simulator")
print("simulator listening on", sim.url)""",
    ),
    ("md", "## 1. Stream one answer live\n\nThe view appends only the new text, at most 30 times a second."),
    (
        "code",
        """\
view = StreamView()
view.show()
request = Request.chat("sim-small", "Explain what time to first token measures.", max_tokens=120)
async with AsyncClient(backend, optimizations=Optimizations.all()) as client:
    result = await view.arun(client, request)""",
    ),
    (
        "code",
        """\
m = result.metrics
print(f"{len(result.text)} characters, {m.output_tokens} tokens ({m.tokens_source}), "
      f"TTFT {m.ttft_ms:.1f} ms, {m.tokens_per_s:.1f} tokens/s")
# The widget shows exactly this text; the checksum makes that easy to verify.
print("sha256 of the final text:", hashlib.sha256(result.text.encode()).hexdigest())""",
    ),
    (
        "md",
        """\
## 2. Toggle optimizations

Each row is one field of `Optimizations`, with what it does and where the idea comes from. Click the boxes, or
set them from code as below; `panel.value` is always the matching `Optimizations`.""",
    ),
    ("code", "panel = OptimizationPanel()\npanel"),
    (
        "code",
        """\
panel.set_preset("all on")
panel.controls["disk_cache"].value = False  # the same as un-ticking the box
chosen = panel.value
print(chosen.label())""",
    ),
    (
        "md",
        """\
## 3. Baseline against your choice

Both variants run the same prompts, interleaved so that drift in the machine hits both alike. The charts
update at most twice a second while the run goes on, with aggregates only (bins and medians), never the raw
samples.""",
    ),
    (
        "code",
        """\
live = LiveCharts()
display(live)
done = []


def on_result(variant, res):
    done.append(res)
    live.update(to_frame(done), chunks_frame(done[-6:]))


workload = Workload.prompts("mixed", limit=8, max_tokens=24)
run = compare(
    workload,
    {"baseline": Optimizations.baseline(), "chosen": chosen},
    backend=backend,
    repeats=2,
    on_result=on_result,
    progress=False,
)
live.flush()
print(f"{run.frame.height} requests in {run.meta['wall_s']:.1f} s")""",
    ),
    (
        "code",
        """\
cmp = run.comparisons(stats=("median",))
cmp.select("variant", "metric", "factor", "ci_lo", "ci_hi", "verdict")""",
    ),
    ("code", "charts.ttft_histogram(run.frame)"),
    ("code", "charts.throughput_by_variant(run.frame)"),
    (
        "md",
        """\
## Summary

The cells below repeat the key results as static images and text, so the exported report
(`workbench report notebooks/01_quickstart.ipynb`) shows them without a running kernel.""",
    ),
    (
        "code",
        """\
lines = [f"- **{r['metric']}** (median), chosen vs baseline: {r['verdict']}"
         for r in cmp.iter_rows(named=True)]
cache = run.frame.group_by("variant", "cache").len().sort("variant", "cache")
hits = ", ".join(f"{r['variant']}/{r['cache']}: {r['len']}" for r in cache.iter_rows(named=True))
display(Markdown(
    "### Quickstart results\\n\\n"
    f"Streamed answer: {len(result.text)} characters, TTFT {result.metrics.ttft_ms:.1f} ms.\\n\\n"
    f"Chosen optimizations: `{chosen.label()}`\\n\\n" + "\\n".join(lines) + f"\\n\\nCache outcomes: {hits}"
))
display(view.static())
display(charts.static(charts.ttft_histogram(run.frame), "png", scale=1))
display(charts.static(charts.throughput_by_variant(run.frame), "png", scale=1))
display(live.static("png", scale=1))""",
    ),
    ("code", "sim.stop()"),
]


AB: list[tuple[str, str]] = [
    (
        "md",
        """\
# Optimizations, A/B and one at a time

What does each client- and cache-side optimization buy? This notebook measures it on the embedded simulator
over TLS (so a new connection costs a real handshake):

1. **A/B**: baseline against all-on, with bootstrap confidence intervals,
2. **ablation**: each toggle on alone from the baseline (`+name`) and off alone from all-on (`-name`),
3. **where the time goes**: token timelines and the client's delay over the server's emit times,
4. **concurrency sweep**: delivered against offered throughput.

About a minute on the simulator.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from workbench.experiments import Workload, ablation, compare, sweep
from workbench.metrics import chunks_frame, itl_frame

# Short answers keep the run quick; TLS makes connection reuse measurable.
profile = Profile(ttft_ms=15, token_delay_ms=2, default_tokens_min=20, default_tokens_max=40, seed=2)
sim = Simulator(profile, tls=True).start()
backend = Backend(sim.url, protocol="openai", verify=sim.ca_path, name="simulator-tls")
workload = Workload.prompts("mixed", limit=10)
print(sim.url, "-", len(workload), "prompts")""",
    ),
    ("md", "## 1. Baseline against all-on"),
    (
        "code",
        """\
ab = compare(
    workload,
    {"baseline": Optimizations.baseline(), "all-on": Optimizations.all()},
    backend=backend,
    repeats=2,
    progress=False,
)
ab_cmp = ab.comparisons(stats=("median", "p99"))
ab_cmp.select("variant", "metric", "stat", "factor", "ci_lo", "ci_hi", "verdict")""",
    ),
    ("code", "charts.ttft_histogram(ab.frame)"),
    ("code", "charts.itl_histogram(itl_frame(ab.results))"),
    ("code", "charts.throughput_by_variant(ab.frame)"),
    ("code", "charts.cache_hit_rate_over_time(ab.frame.filter(pl.col('variant') == 'all-on'), bins=10)"),
    (
        "md",
        """\
## 2. One toggle at a time

`+name` is the baseline with only that toggle on; `-name` is all-on with only that toggle off. A factor above
1 means better (lower latency, higher throughput); a bar that crosses 1 means no detectable difference.

This run uses only *unique* prompts, so the caches have nothing to answer and the transport and UI toggles
are not drowned by cache hits; what the caches buy is in section 1 and in notebook 03.""",
    ),
    (
        "code",
        """\
unique = [r for r in Workload.prompts("mixed").to_records() if r["relation"] == "unique"][:8]
abl = ablation(Workload.from_records(unique), backend=backend, repeats=1, progress=False)
abl_cmp = abl.comparisons(metrics=("ttft_ms", "e2e_ms"), stats=("median",))
charts.ablation_chart(abl_cmp)""",
    ),
    ("md", "## 3. Where the time goes"),
    (
        "code",
        """\
sample = [r for r in ab.results if r.cache in ("miss", "off")][:6]
charts.token_timeline(chunks_frame(sample))""",
    ),
    (
        "code",
        """\
def ground_truth_frame(results, sim):
    \"\"\"Client arrival vs server emit time per token chunk (one clock: the simulator runs in-process).\"\"\"
    rows = []
    for r in results:
        if r.cache not in ("miss", "off"):
            continue  # a cache hit never reached the server
        try:
            truth = sim.ground_truth(r.request_id, wait_s=0.5)
        except KeyError:
            continue
        arrived = [c.t_ns for c in r.chunks if c.text]
        if len(arrived) != len(truth.token_emit_ns):
            continue  # not pairable one to one
        for i, (seen, sent) in enumerate(zip(arrived, truth.token_emit_ns)):
            rows.append({"variant": r.request.tags.get("variant"), "i": i,
                         "client_ms": (seen - r.sent_ns) / 1e6, "server_ms": (sent - r.sent_ns) / 1e6})
    return pl.DataFrame(rows)


truth = ground_truth_frame(ab.results, sim)
charts.client_overhead(truth)""",
    ),
    (
        "md",
        """\
## 4. Concurrency sweep

Requests arrive on a fixed schedule (open loop) at increasing rates; the simulator serves at most four at a
time. Below saturation delivered throughput follows the offered load; above it, it flattens.""",
    ),
    (
        "code",
        """\
import dataclasses

capped = Simulator(dataclasses.replace(profile, max_parallel=4)).start()
no_cache = Optimizations.all().replace(exact_cache=False, semantic_cache=False, disk_cache=False)
rates = (5, 10, 20, 40)
runs = sweep(workload, {"all-on, no cache": no_cache}, "rate=" + ",".join(map(str, rates)),
             backend=Backend(capped.url, protocol="openai"), progress=False)
capped.stop()
rows = []
for rate, r in zip(rates, runs):
    tokens = r.measured.get_column("output_tokens").mean()
    got = r.throughput().row(0, named=True)
    rows.append({"rate": rate, "offered_tokens_per_s": rate * tokens,
                 "delivered_tokens_per_s": got["tokens_per_s"]})
sweep_frame = pl.DataFrame(rows)
charts.concurrency_sweep_chart(sweep_frame, label="rate")""",
    ),
    ("md", "## Summary"),
    (
        "code",
        """\
def verdicts(frame, stat="median", only_significant=False):
    rows = frame.filter(pl.col("stat") == stat)
    if only_significant:
        rows = rows.filter(pl.col("significant"))
    lines = [f"- **{r['variant']}**, {r['metric']}: {r['verdict']}" for r in rows.iter_rows(named=True)]
    return "\\n".join(lines) or "- no toggle made a detectable difference on its own"


display(Markdown("### A/B results (median)\\n\\n" + verdicts(ab_cmp)
                 + "\\n\\n### Ablation: detectable effects (median, unique prompts)\\n\\n"
                 + verdicts(abl_cmp, only_significant=True)))
for chart in (
    charts.ttft_histogram(ab.frame),
    charts.throughput_by_variant(ab.frame),
    charts.ablation_chart(abl_cmp),
    charts.client_overhead(truth),
    charts.concurrency_sweep_chart(sweep_frame, label="rate"),
):
    display(charts.static(chart, "png", scale=1))""",
    ),
    ("code", "sim.stop()"),
]


SEMANTIC: list[tuple[str, str]] = [
    (
        "md",
        """\
# Semantic cache: hit rates, false hits, threshold

The shipped prompt set mixes unique prompts, exact **repeats** and **paraphrases**. An exact cache answers
repeats only; a semantic cache also answers paraphrases, and risks answering a *different* question whose
embedding happens to be close (a false hit). This notebook measures both and picks a threshold.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from workbench.experiments import Workload, compare

profile = Profile(ttft_ms=30, token_delay_ms=1, default_tokens_min=20, default_tokens_max=40, seed=3)
sim = Simulator(profile).start()
backend = Backend(sim.url, protocol="openai", name="simulator")
workload = Workload.prompts("mixed")
pl.DataFrame(workload.to_records()).group_by("relation").len().sort("relation")""",
    ),
    ("md", "## 1. Hit rates: exact only against exact + semantic"),
    (
        "code",
        """\
base = Optimizations(connection_pool=True, fast_parse=True)
run = compare(
    workload,
    {
        "exact": base.replace(exact_cache=True),
        "exact+semantic": base.replace(exact_cache=True, semantic_cache=True),
    },
    backend=backend,
    progress=False,
)
table = (
    run.measured.group_by("variant", "expected_cache", "cache").len()
    .sort("variant", "expected_cache", "cache")
)
table""",
    ),
    ("code", "semantic = run.frame.filter(pl.col('variant') == 'exact+semantic')\n"
             "charts.cache_hit_rate_over_time(semantic, bins=10)"),
    ("code", "charts.ttft_histogram(run.frame, by='cache')"),
    ("md", "## 2. The false-hit audit"),
    (
        "md",
        """\
A hit rate says nothing about whether the answers served were right. The audit stores one side of 600
labelled question pairs (paraphrases that should hit; negations, swapped entities, changed numbers that must
not) and looks up the other side, at each threshold. `false_hit_rate` is the share of *served* cached answers
that answer a different question; the bands are Wilson 95 % intervals.""",
    ),
    (
        "code",
        """\
from workbench.cache.audit import audit_semantic_cache

audit = audit_semantic_cache(progress=False)
print(audit.summary())""",
    ),
    (
        "code",
        """\
budget = 0.05
chosen = audit.threshold_for(budget, conservative=True)
if chosen is None:
    # Nothing audited keeps false hits under budget: take the strictest threshold and say so.
    chosen = max(audit.thresholds)
    advice = (f"No audited threshold keeps false hits under {budget:.0%} (upper CI bound) with "
              f"`{audit.embedder}`; the strictest one ({chosen}) still serves a wrong answer for "
              f"{audit.frame.filter(pl.col('min_cosine') == chosen)['false_hit_rate'][0]:.0%} of its hits. "
              "Use a stronger embedder, or keep the semantic cache off where a wrong answer is costly.")
else:
    advice = (f"Threshold {chosen} keeps false hits under {budget:.0%} (upper CI bound) "
              f"with `{audit.embedder}`.")
display(Markdown(advice))
charts.audit_chart(audit.frame, chosen=chosen)""",
    ),
    ("code", "audit.by_category(chosen)"),
    ("md", "## Summary"),
    (
        "code",
        """\
rates = (
    run.measured.group_by("variant")
    .agg(hit_rate=pl.col("cache").is_in(["exact", "semantic"]).mean(), n=pl.len())
    .sort("variant")
)
lines = [f"- **{r['variant']}**: {r['hit_rate']:.0%} of {r['n']} requests answered from the cache"
         for r in rates.iter_rows(named=True)]
display(Markdown(
    "### Semantic cache results\\n\\n" + "\\n".join(lines)
    + f"\\n\\nFalse-hit audit ({audit.embedder}, pair AUC {audit.pair_auc:.2f}): {advice}"
))
for chart in (
    charts.cache_hit_rate_over_time(run.frame.filter(pl.col("variant") == "exact+semantic"), bins=10),
    charts.ttft_histogram(run.frame, by="cache"),
    charts.audit_chart(audit.frame, chosen=chosen),
):
    display(charts.static(chart, "png", scale=1))""",
    ),
    ("code", "sim.stop()"),
]

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_optimizations_ab.ipynb": AB,
    "03_semantic_cache.ipynb": SEMANTIC,
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell(src) if kind == "md" else v4.new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--execute", action="store_true", help="run each notebook and save it with outputs")
    p.add_argument("names", nargs="*", help="only these notebooks (default: all)")
    args = p.parse_args(argv)
    from workbench import report

    status = 0
    for name, cells in NOTEBOOKS.items():
        if args.names and not any(n in name for n in args.names):
            continue
        path = HERE / name
        nbformat.write(build(cells), path)
        print("wrote", path)
        if args.execute:
            html = RESULTS / name.replace(".ipynb", ".html")
            status |= report.main([str(path), "--inplace", "-o", str(html), "--timeout", "300"])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
