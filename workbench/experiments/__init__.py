"""Experiments: workloads, arrival modes, interleaved A/B runs, ablations, sweeps, statistics and reports.

    from workbench import Optimizations
    from workbench.experiments import SLO, Workload, compare

    wl = Workload.prompts("mixed", limit=40, max_tokens=32)      # or .synthetic(...), .from_list, .from_frame
    run = compare(wl, {"baseline": Optimizations(), "optimized": Optimizations.all()},
                  backend=url, repeats=2, warmup=1, arrival="rate=20,poisson")
    run.comparisons()          # factor (> 1 better), bootstrap CI, "faster by 1.8x, 95% CI 1.6-2.0"
    run.summary(); run.goodput(SLO(ttft_ms=500, tpot_ms=50)); run.warnings
    run.save("data/results/ab")  # Parquet + JSON sidecar; RunResult.load(...) reads it back

Variants run interleaved (request by request, seeded order) so drift hits all of them alike. Every request
records when it was due (`scheduled_ms`), how long it waited for a free slot (`client_queue_ms`) and how late
it went out (`sent_lag_ms`), so client-side queueing is reported, never folded into TTFT.
"""

from workbench.experiments.arrivals import (
    Arrival,
    Concurrency,
    Rate,
    Sequential,
    Sweep,
    parse_arrival,
    parse_sweep,
    schedule_ns,
)
from workbench.experiments.results import RunResult, sweep_table
from workbench.experiments.runner import (
    aablation,
    ablation,
    ablation_variants,
    acompare,
    compare,
    plan,
    sweep,
)
from workbench.experiments.verdicts import SLO, comparisons, goodput, verdict
from workbench.experiments.workloads import PromptItem, Workload, available_prompt_sets

__all__ = [
    "SLO",
    "Arrival",
    "Concurrency",
    "PromptItem",
    "Rate",
    "RunResult",
    "Sequential",
    "Sweep",
    "Workload",
    "aablation",
    "ablation",
    "ablation_variants",
    "acompare",
    "available_prompt_sets",
    "compare",
    "comparisons",
    "goodput",
    "parse_arrival",
    "parse_sweep",
    "plan",
    "schedule_ns",
    "sweep",
    "sweep_table",
    "verdict",
]
