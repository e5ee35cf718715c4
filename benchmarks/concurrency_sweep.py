"""Concurrency sweep: 1..256 concurrent streams against the simulator; delivered vs offered tokens/s.

    .venv/bin/python benchmarks/concurrency_sweep.py [--levels 1,2,4,...,256] [--token-ms 10] [--tokens 32]

The simulator runs in its own process, so its CPU is measured apart from the client's (psutil on its pid),
and the client's event-loop thread CPU is sampled by the runner. Offered load is what the simulator's clock
allows: concurrency x tokens / (ttft + tokens x token_ms) tokens/s; delivered is Σ output tokens / wall time
of the level. In a closed loop there is no schedule, so client lag shows in the token clock instead: the
p50 TPOT over the simulator's token delay is ~1 when the client keeps up, and falls towards 0 when tokens
pile up and arrive in one read (the event loop got to the socket late). The "limit" column names what gave
out: client CPU (event loop >= 90% of a core), client reads late (TPOT ratio < 0.5), connection churn
(reuse < 50% and connects > 5 ms), server CPU, or else machine load (1-minute load above the core count). Writes
data/results/concurrency_sweep.{png,csv} and prints the table. Read the ratios and the knee, not the values.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil

from workbench import Backend, Optimizations
from workbench.experiments import Concurrency, Workload, compare
from workbench.experiments.report import markdown_table
from workbench.metrics.stats import percentile

ROOT = Path(__file__).resolve().parents[1]

_SERVER = """
import sys
from workbench.simulator import Profile, Simulator
sim = Simulator(Profile(ttft_ms={ttft}, ttft_per_prompt_token_ms=0.0, token_delay_ms={tok}, jitter=0.1, seed=1))
sim.start()
print(sim.url, flush=True)
sys.stdin.read()
sim.stop()
"""


def start_server(ttft: float, tok: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(ttft=ttft, tok=tok)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"simulator did not start (got {url!r})")
    return proc, url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,2,4,8,16,32,64,128,256")
    ap.add_argument("--token-ms", type=float, default=10.0)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--waves", type=int, default=2, help="requests per level = waves x concurrency (min 16)")
    ap.add_argument("--out", default=str(ROOT / "data" / "results"))
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    proc, url = start_server(args.ttft_ms, args.token_ms)
    server = psutil.Process(proc.pid)
    opts = Optimizations(connection_pool=True, fast_parse=True)
    rows = []
    try:
        for c in levels:
            n = max(args.waves * c, 16)
            wl = Workload.synthetic(n, input_tokens=16, output_tokens=args.tokens, seed=c, model="sim-small")
            server.cpu_percent(None)
            t = time.perf_counter()
            run = compare(
                wl,
                {"pooled": opts},
                backend=Backend(url, protocol="openai"),
                warmup=2,
                arrival=Concurrency(c),
                progress=False,
            )
            wall = time.perf_counter() - t
            srv_cpu = server.cpu_percent(None)
            f = run.measured
            ok = f.filter(pl.col("status") == "ok")
            tokens = int(ok["output_tokens"].sum())
            span_s = (int(f["end_ns"].max()) - int(f["sent_ns"].min())) / 1e9  # type: ignore[arg-type]
            per_stream = args.tokens / ((args.ttft_ms + args.tokens * args.token_ms) / 1000.0)
            offered = c * per_stream
            load1 = os.getloadavg()[0]
            delivered = tokens / span_s
            loop_cpu = run.meta["cpu_samples"]
            client_cpu = percentile(loop_cpu, 50) if loop_cpu else float("nan")
            inflation = percentile(ok["tpot_ms"], 50) / args.token_ms
            reuse = float(ok["connection_reused"].cast(pl.Float64).mean() or 0)
            connect_p50 = percentile(ok["connect_ms"], 50)
            limits = []
            if client_cpu >= 90:
                limits.append("client CPU")
            if inflation < 0.5:
                limits.append("client reads late")  # tokens arrive in one read: the loop got to them late
            if reuse < 0.5 and connect_p50 > 5:
                limits.append("connection churn")
            if srv_cpu >= 90:
                limits.append("server CPU")
            if not limits and delivered < 0.9 * offered and load1 > (os.cpu_count() or 1):
                limits.append("machine load")
            limit = " + ".join(limits) or "-"
            rows.append(
                {
                    "concurrency": c,
                    "requests": f.height,
                    "errors": f.height - ok.height,
                    "offered_tokens_per_s": round(offered, 1),
                    "delivered_tokens_per_s": round(delivered, 1),
                    "delivered_ratio": round(delivered / offered, 3),
                    "ttft_p50_ms": round(percentile(ok["ttft_ms"], 50), 1),
                    "ttft_p99_ms": round(percentile(ok["ttft_ms"], 99), 1),
                    "tpot_p50_over_token_ms": round(inflation, 2),
                    "conn_reuse_pct": round(100 * reuse, 0),
                    "connect_p50_ms": round(connect_p50, 1),
                    "client_loop_cpu_pct": round(client_cpu, 0),
                    "server_cpu_pct": round(srv_cpu, 0),
                    "load_avg_1m": round(load1, 1),
                    "limit": limit,
                    "wall_s": round(wall, 2),
                }
            )
            for w in run.warnings:
                print(f"  warning: {w}")
            print(
                f"c={c:>4}: delivered {delivered:9.1f} / offered {offered:9.1f} tok/s, "
                f"client {client_cpu:5.0f}% server {srv_cpu:5.0f}% ({wall:.1f} s)",
                flush=True,
            )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    table = pl.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.write_csv(out / "concurrency_sweep.csv")
    print()
    print(markdown_table(table))
    knee = table.filter(pl.col("delivered_ratio") < 0.9).head(1)
    if knee.height:
        k = knee.row(0, named=True)
        print(
            f"\ndelivered falls below 90% of offered at concurrency {k['concurrency']} "
            f"(client loop CPU {k['client_loop_cpu_pct']:.0f}%, server CPU {k['server_cpu_pct']:.0f}%)"
        )
    else:
        print("\ndelivered stayed >= 90% of offered at every level")
    try:
        from workbench.widgets.charts import concurrency_sweep_chart, save_chart

        chart = concurrency_sweep_chart(table.with_columns(pl.lit("pooled").alias("variant")))
        path = save_chart(chart, out / "concurrency_sweep.png")
        print(f"chart: {path}")
    except Exception as exc:  # the table is the result; the chart is a view of it
        print(f"chart skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
