"""Router cost: accuracy on the shipped labelled prompts, routing µs per request, and routing µs against TTFT.

    .venv/bin/python benchmarks/router_cost.py [--reps 20] [--ttft-ms 50] [--requests 202]

1. Accuracy: the default two-tier router over `workbench/router/_data/prompts.jsonl`; a confusion table
   (expected tier by chosen tier) and accuracy per category and per split: "tune" is in-sample (the weights
   were set with it in view), "holdout" was written afterwards and scored once.
2. Routing µs: every prompt routed `--reps` times with the security fast path on and off; p50/p99 over all
   prompts, and over the prompts a policy forces (where the fast path skips classification), with the ratio.
3. Routing vs TTFT, same run: each prompt is routed then streamed to the built-in simulator (in a child
   process, so the server shares no GIL with the timed routing) under its tier's model; per request,
   routing_us / (ttft_ms x 1000). The simulator's TTFT is its latency model (--ttft-ms plus a per-prompt-token
   cost), so read the ratio as "routing against a fast local server"; a real model's TTFT is larger.
   routing_cpu_us (this thread's CPU time around `Router.apply`) beside the wall-clock routing_us tells a
   descheduled process (shared cores) from routing work. Routings over 10x the offline p50 are listed.
Writes data/results/router_cost.csv (per-request rows) and data/results/router_tiers.png (tier shares).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from workbench import Client, Request
from workbench.metrics import to_frame
from workbench.router import Router, Target, confusion, evaluate, load_prompts, tier_share_chart
from workbench.simulator import Profile
from workbench.simulator.process import ProcessSimulator

ROOT = Path(__file__).resolve().parents[1]


def _q(s: pl.Series, q: float) -> float:
    v = s.quantile(q, interpolation="linear")
    return float(v) if v is not None else float("nan")


def routing_costs(router: Router, reps: int) -> pl.DataFrame:
    """Route every labelled prompt `reps` times per fast-path setting, interleaved so drift hits both alike."""
    prompts = load_prompts()
    rows = []
    for r in range(reps):
        for p in prompts:
            for fast in (True, False) if r % 2 == 0 else (False, True):
                d = router.route(p.messages, fast_path=fast)
                rows.append({"id": p.id, "forced": p.forced, "fast_path_on": fast, "routing_us": d.routing_us})
    return pl.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="routing repetitions per prompt and setting")
    ap.add_argument("--ttft-ms", type=float, default=50.0, help="simulator TTFT (ms)")
    ap.add_argument("--requests", type=int, default=0, help="prompts streamed to the simulator (0: all)")
    ap.add_argument("--out", default=str(ROOT / "data" / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pl.Config.set_tbl_hide_dataframe_shape(True)

    # 1. accuracy (the targets are not contacted here)
    offline = Router({"small": Target("http://127.0.0.1:9", "sim-small"), "large": Target("http://127.0.0.1:9", "sim-large")})
    ev = evaluate(offline)
    acc = float(ev["correct"].mean())  # type: ignore[arg-type]
    print(f"accuracy on the shipped set: {acc:.3f} ({int(ev['correct'].sum())}/{ev.height})")
    for (split,), sub in ev.group_by("split", maintain_order=True):
        n_ok = int(sub["correct"].sum())
        print(f"  split {split}: {n_ok / sub.height:.3f} ({n_ok}/{sub.height})")
    print("confusion (rows: expected tier, columns: chosen tier):")
    print(confusion(ev))
    print(
        ev.group_by("category")
        .agg(pl.len().alias("n"), pl.col("correct").mean().round(3).alias("accuracy"))
        .sort("category")
    )

    # 2. routing µs, fast path on vs off
    costs = routing_costs(offline, args.reps)
    print(f"\nrouting µs ({args.reps} reps per prompt and setting):")
    table = []
    for label, sub in [("all prompts", costs), ("forced by policy", costs.filter(pl.col("forced")))]:
        on = sub.filter(pl.col("fast_path_on"))["routing_us"]
        off = sub.filter(~pl.col("fast_path_on"))["routing_us"]
        table.append(
            {
                "prompts": label,
                "fast_path_on_p50_us": round(_q(on, 0.5), 2),
                "fast_path_on_p99_us": round(_q(on, 0.99), 2),
                "fast_path_off_p50_us": round(_q(off, 0.5), 2),
                "fast_path_off_p99_us": round(_q(off, 0.99), 2),
                "p50_ratio_on_off": round(_q(on, 0.5) / _q(off, 0.5), 3),
            }
        )
    print(pl.DataFrame(table))

    # 3. routing vs TTFT, per request, same run
    profile = Profile(
        ttft_ms=args.ttft_ms, token_delay_ms=1.0, jitter=0.1, default_tokens_min=4, default_tokens_max=8, seed=1
    )
    prompts = load_prompts()
    if args.requests:
        prompts = prompts[: args.requests]
    with ProcessSimulator(profile) as sim:
        tiers = {"small": Target(sim.url, "sim-small", "ollama"), "large": Target(sim.url, "sim-large", "ollama")}
        router = Router(tiers)
        results = []
        cpu_us = []
        with Client(tiers["small"].backend()) as client:
            client.run(Request.chat("sim-small", "warm-up", max_tokens=2))  # first connection not timed
            for p in prompts:
                cpu0 = time.thread_time_ns()
                req, _ = router.apply(Request.chat("unrouted", list(p.messages), max_tokens=8))
                # This thread's CPU time around the call: a wall-clock routing_us far above it means the
                # process was descheduled (2 shared cores), not that routing did more work.
                cpu_us.append((time.thread_time_ns() - cpu0) / 1000.0)
                results.append(client.run(req))
    frame = to_frame(results).with_columns(
        (pl.col("routing_us") / (pl.col("ttft_ms") * 1000.0)).alias("routing_over_ttft"),
        pl.Series("routing_cpu_us", cpu_us),
    )
    frame = frame.filter(pl.col("status") == "ok")
    print(f"\nrouting vs TTFT on the simulator ({frame.height} requests, ttft_ms={args.ttft_ms}):")
    print(
        frame.group_by("tier")
        .agg(
            pl.len().alias("n"),
            pl.col("routing_us").median().round(2).alias("routing_us_p50"),
            pl.col("routing_us").quantile(0.99).round(2).alias("routing_us_p99"),
            pl.col("routing_cpu_us").quantile(0.99).round(2).alias("routing_cpu_us_p99"),
            pl.col("ttft_ms").median().round(2).alias("ttft_ms_p50"),
            (pl.col("routing_over_ttft").median() * 100).round(4).alias("routing_pct_of_ttft_p50"),
            (pl.col("routing_over_ttft").max() * 100).round(4).alias("routing_pct_of_ttft_max"),
        )
        .sort("tier")
    )
    offline_p50 = _q(costs.filter(pl.col("fast_path_on"))["routing_us"], 0.5)
    slow = frame.filter(pl.col("routing_us") > 10 * offline_p50)
    print(
        f"{slow.height} of {frame.height} in-run routings took over 10x the offline p50 ({offline_p50:.1f} µs): "
        + ", ".join(f"{a:.0f} µs (cpu {b:.0f})" for a, b in zip(slow["routing_us"], slow["routing_cpu_us"], strict=True))
    )
    keep = [
        "request_id", "tier", "route_fast_path", "routing_us", "routing_cpu_us", "ttft_ms", "routing_over_ttft"
    ]
    frame.select([c for c in keep if c in frame.columns]).write_csv(out / "router_cost.csv")
    from workbench.charts import save_chart

    save_chart(tier_share_chart(frame, title="Tier shares, shipped prompt set"), out / "router_tiers.png")
    print(f"\nwrote {out / 'router_cost.csv'} and {out / 'router_tiers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
