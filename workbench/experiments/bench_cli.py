"""`workbench bench`: run an A/B, an ablation or a sweep against a server (or the embedded simulator), then
write results (Parquet + JSON sidecar), a Markdown table and an offline HTML report with inline SVG charts.

    workbench bench --tls --variants baseline,all --repeats 2 --warmup 1 --out data/results/ab
    workbench bench --ablation --prompts mixed --limit 30
    workbench bench --url http://127.0.0.1:11434 --model llama3.2 --arrival rate=5,poisson
    workbench bench --sweep concurrency=1,4,16 --synthetic 64 --output-tokens 16
    workbench bench --sweep concurrency=1,8,64,256 --workers 2 --sim-processes 2 --synthetic 512
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from workbench import charts as ch
from workbench._exceptions import ConfigError, WorkbenchError
from workbench._secrets import redact_argv
from workbench._types import Backend
from workbench.experiments.arrivals import parse_arrival, parse_sweep
from workbench.experiments.bench_report import error_section, html_report, markdown_report, markdown_table
from workbench.experiments.results import RunResult, sweep_table
from workbench.experiments.runner import ablation_variants, compare
from workbench.experiments.verdicts import SLO
from workbench.experiments.workloads import Workload, available_prompt_sets
from workbench.metrics.frames import failure_line, tokens_note
from workbench.optimizations import Optimizations

__all__ = ["main", "parse_variant"]

_NAMED = {"baseline": Optimizations.baseline, "all": Optimizations.all, "transport": Optimizations.transport}


def parse_variant(spec: str) -> Optimizations:
    """`baseline`, `all`, `transport`, or toggles joined by `+` (`connection_pool+http2+concurrency=4`)."""
    spec = spec.strip()
    if spec in _NAMED:
        return _NAMED[spec]()
    fields = {f.name: f for f in dataclasses.fields(Optimizations)}
    changes: dict[str, Any] = {}
    for part in spec.split("+"):
        name, _, value = part.strip().partition("=")
        if name not in fields:
            raise ConfigError(f"unknown optimization {name!r}", hint=f"known: {', '.join(fields)}")
        changes[name] = int(value) if name == "concurrency" else (value.lower() not in ("0", "false", "off"))
    return Optimizations(**changes)


def _variants(spec: str) -> dict[str, Optimizations]:
    """`baseline,all`, or named `A:baseline,B:baseline` (names let an A/A run use one spec twice)."""
    out: dict[str, Optimizations] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, _, body = item.rpartition(":")
        out[name or body] = parse_variant(body)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench bench", description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("server")
    g.add_argument("--url", help="a real server; without it the embedded simulator is started")
    g.add_argument("--protocol", default="auto", choices=["auto", "openai", "ollama"])
    g.add_argument(
        "--api-key",
        default=None,
        help="API key (default: $WORKBENCH_API_KEY or $OPENAI_API_KEY; prefer those, a command line is "
        "visible to other users). Never saved: the recorded command line shows ***",
    )
    g.add_argument("--ca", default=None, help="CA bundle to trust (TLS)")
    g.add_argument("--tls", action="store_true", help="simulator: serve HTTPS (its own CA is trusted)")
    g.add_argument("--http2", action="store_true", help="simulator: offer HTTP/2")
    g.add_argument("--ttft-ms", type=float, help="simulator: time to first token")
    g.add_argument("--token-ms", type=float, help="simulator: delay per token")
    g.add_argument("--jitter", type=float, help="simulator: relative jitter of the token delay")
    g.add_argument("--max-parallel", type=int, help="simulator: requests served at once (others queue)")
    g.add_argument("--sim", action="append", default=[], metavar="KEY=VALUE", help="any other Profile field")
    g.add_argument(
        "--sim-processes",
        type=int,
        default=0,
        metavar="N",
        help="simulator: serve from N child processes on one port (SO_REUSEPORT); 0 = in this process",
    )
    w = p.add_argument_group("workload")
    w.add_argument("--model", default=None, help="model name (default: the first model the server lists)")
    w.add_argument("--prompts", default="mixed", help=f"shipped set: {', '.join(available_prompt_sets())}")
    w.add_argument("--prompts-file", help="a JSONL file of prompts (text, id, group, relation, ...)")
    w.add_argument("--synthetic", type=int, metavar="N", help="N synthetic prompts instead of a prompt set")
    w.add_argument("--input-tokens", type=int, default=64)
    w.add_argument("--output-tokens", type=int, default=32)
    w.add_argument("--spread", type=float, default=0.0)
    w.add_argument("--limit", type=int, help="use only the first N prompts")
    w.add_argument(
        "--balanced", type=int, metavar="N", help="about N prompts by whole groups (keeps repeats)"
    )
    w.add_argument("--max-tokens", type=int, default=None)
    r = p.add_argument_group("run")
    r.add_argument(
        "--variants", default="baseline,all", help="comma-separated: baseline, all, transport, a+b"
    )
    r.add_argument("--ablation", action="store_true", help="each toggle off from all-on and on from baseline")
    r.add_argument("--repeats", type=int, default=1)
    r.add_argument("--arrival", default="sequential", help="sequential | concurrency=N | rate=R[,poisson]")
    r.add_argument("--sweep", help="concurrency=1,4,16 or rate=10,50[,poisson]: one run per level")
    r.add_argument(
        "--workers", type=int, default=1, help="client processes sharing the streams (or the rate schedule)"
    )
    r.add_argument(
        "--executor",
        default="process",
        choices=["process", "ray"],
        help="run --workers as processes or Ray actors",
    )
    r.add_argument("--warmup", type=int, default=1, help="warm-up requests per variant (excluded)")
    r.add_argument("--no-interleave", action="store_true")
    r.add_argument(
        "--block", type=int, default=1, help="interleave in randomized blocks of this many prompts"
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--slo", default="ttft_ms=500,tpot_ms=50", help="goodput limits, e.g. ttft_ms=500,e2e_ms=5000"
    )
    r.add_argument("--out", default=None, help="output directory (default data/results/bench-<time>)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument(
        "--cache-dir",
        default=None,
        help="keep disk_cache variants' disk tier in DIR/<variant> across runs (a later run answers from "
        "it); default: a temporary folder per variant, removed after the run",
    )
    r.add_argument("--charts", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument(
        "--scenarios",
        nargs="?",
        const="all",
        default=None,
        metavar="KEYS",
        help="run each toggle's scenario on the simulator (or only KEYS: pool,http2,...) and print the "
        "one-row-per-toggle table and the seed claims (about 2 minutes, small n per arm)",
    )
    return p


def _profile(args: argparse.Namespace) -> Any:
    from workbench.simulator import Profile

    changes: dict[str, Any] = {}
    for flag, name in (
        ("ttft_ms", "ttft_ms"),
        ("token_ms", "token_delay_ms"),
        ("jitter", "jitter"),
        ("max_parallel", "max_parallel"),
    ):
        if getattr(args, flag) is not None:
            changes[name] = getattr(args, flag)
    fields = {f.name: f for f in dataclasses.fields(Profile)}
    for kv in args.sim:
        key, _, raw = kv.partition("=")
        if key not in fields:
            raise ConfigError(f"unknown simulator setting {key!r}", hint=f"known: {', '.join(fields)}")
        default = fields[key].default
        changes[key] = type(default)(raw) if isinstance(default, int | float | str) else float(raw)
    return Profile(**changes)


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[Backend, dict[str, Any]]]:
    if args.url:
        verify: bool | str = args.ca if args.ca else True
        key = args.api_key or os.environ.get("WORKBENCH_API_KEY") or os.environ.get("OPENAI_API_KEY")
        backend = Backend(args.url, protocol=args.protocol, api_key=key or None, verify=verify)
        yield backend, {"url": backend.url}  # Backend took any user:secret@ out of the URL
        return
    from workbench.simulator import Simulator
    from workbench.simulator.process import ProcessSimulator

    profile = _profile(args)
    sim_cls: Any = Simulator
    extra: dict[str, Any] = {}
    if args.sim_processes > 0:
        sim_cls, extra = ProcessSimulator, {"processes": args.sim_processes}
    with sim_cls(profile, tls=args.tls, http2=args.http2, **extra) as sim:
        verify = sim.ca_path if sim.ca_path else True
        info = {
            "simulator": True,
            "tls": args.tls,
            "http2": args.http2,
            "profile": dataclasses.asdict(profile),
            "processes": max(args.sim_processes, 1),
        }
        proto: Literal["openai", "ollama"] = "ollama" if args.protocol == "ollama" else "openai"
        yield Backend(sim.url, protocol=proto, verify=verify, name="simulator"), info


def _workload(args: argparse.Namespace) -> Workload:
    common: dict[str, Any] = {"model": args.model, "max_tokens": args.max_tokens}
    if args.synthetic:
        wl = Workload.synthetic(
            args.synthetic,
            input_tokens=args.input_tokens,
            output_tokens=args.output_tokens,
            spread=args.spread,
            seed=args.seed,
            **common,
        )
    elif args.prompts_file:
        wl = Workload.from_jsonl(args.prompts_file, **common)
    else:
        wl = Workload.prompts(args.prompts, **common)
    if args.balanced:
        wl = wl.balanced(args.balanced)
    return wl.head(args.limit) if args.limit else wl


def _slo(spec: str) -> SLO:
    kv = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    try:
        return SLO(**{k.strip(): float(v) for k, v in kv.items()})
    except TypeError as exc:
        raise ConfigError(
            f"cannot read SLO {spec!r}", hint="keys: ttft_ms, tpot_ms, e2e_ms, itl_p99_ms"
        ) from exc


def _charts(run: RunResult) -> list[str]:
    """Inline SVGs from `workbench.charts` (vl-convert); a report without charts beats no report."""
    out = []
    frame = run.measured
    makers: list[Callable[[], Any]] = [
        lambda: ch.ttft_histogram(frame),
        lambda: ch.throughput_by_variant(frame),
        lambda: ch.ablation_chart(run.comparisons(), stat="median"),
        lambda: ch.cache_hit_rate_over_time(frame),
    ]
    for make in makers:
        try:
            out.append(ch.to_svg(make()))
        except Exception as exc:  # one chart failing must not lose the measured results
            print(f"chart skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def _write(run: RunResult, out: Path, title: str, charts: bool) -> None:
    run.save(out / "results.parquet")
    md = markdown_report(run)
    md += "\n### Goodput\n\n" + markdown_table(run.goodput()) + "\n"
    md += "\n### Throughput\n\n" + markdown_table(run.throughput()) + "\n"
    (out / "report.md").write_text(md)
    page = html_report(run, charts=_charts(run) if charts else [], title=title)
    (out / "report.html").write_text(page)


def _write_knee(runs: list[RunResult], out: Path, charts: bool) -> None:
    """Delivered vs offered per level, the knee (first level below 0.9) and the sweep charts."""
    from workbench.experiments.sweep import knee_line, sweep_charts, sweep_frame

    frame = sweep_frame(runs)
    if frame.is_empty():
        return
    frame.write_csv(out / "sweep_load.csv")
    cols = ["level", "variant", "offered_tokens_per_s", "delivered_tokens_per_s", "delivered_ratio"]
    cols += ["ttft_p50_ms", "ttft_p99_ms", "client_lag_p99_ms", "client_share", "client_limited"]
    print("\n== delivered vs offered ==")
    print(markdown_table(frame.select(cols)))
    line = knee_line(frame)
    print(f"\n{line}")
    (out / "sweep_knee.txt").write_text(line + "\n")
    if not charts:
        return
    svgs = []
    for chart in sweep_charts(frame):
        try:
            svgs.append(ch.to_svg(chart))
        except Exception as exc:  # one chart failing must not lose the measured results
            print(f"chart skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    page = "".join(f"<div>{svg}</div>" for svg in svgs)
    (out / "sweep.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>sweep</title></head><body>"
        f"<h1>Sweep</h1><p>{html.escape(line)}</p>{page}</body></html>"
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except WorkbenchError as exc:
        print(f"workbench bench: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.scenarios is not None:
        from workbench.experiments.scenario_cli import run_scenarios_cli

        return run_scenarios_cli(args.scenarios, args.out, charts=args.charts)
    variants = ablation_variants() if args.ablation else _variants(args.variants)
    workload = _workload(args)
    slo = _slo(args.slo)
    arrivals = parse_sweep(args.sweep).arrivals() if args.sweep else [parse_arrival(args.arrival)]
    out = Path(args.out or f"data/results/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    with _server(args) as (backend, server_info):
        runs: list[RunResult] = []
        all_failed: list[str] = []  # arrival levels where not one measured request succeeded
        for arrival in arrivals:
            run = compare(
                workload,
                variants,
                backend=backend,
                repeats=args.repeats,
                interleave=not args.no_interleave,
                arrival=arrival,
                warmup=args.warmup,
                progress=not args.no_progress,
                seed=args.seed,
                block=args.block,
                slo=slo,
                baseline="baseline" if "baseline" in variants else None,
                cache_dir=args.cache_dir,
                workers=args.workers,
                executor=args.executor,
            )
            run.config["server"] = server_info
            run.config["argv"] = redact_argv(sys.argv[1:])
            target = out if len(arrivals) == 1 else out / arrival.label().replace("=", "-").replace(",", "-")
            target.mkdir(parents=True, exist_ok=True)
            _write(run, target, f"workbench bench · {arrival.label()}", args.charts)
            runs.append(run)
            failed = failure_line(run.measured)
            n_failed = int(run.errors.get_column("count").sum())
            every = n_failed > 0 and n_failed == run.measured.height
            if failed is not None:  # before any table: a table of dashes must not come first
                print(f"workbench bench: {'FAILED: ' if every else ''}{failed}", flush=True)
            print(f"\n== {arrival.label()} ==")
            section = error_section(run)
            if every and section is not None:
                # the measurement tables would be all dashes: show why, and where the full report is
                all_failed.append(arrival.label())
                print("### Errors\n\n" + markdown_table(section[1]))
                print(f"\nno request succeeded; the report in {target}/ has no measurements")
                continue
            print(markdown_report(run))
            note = tokens_note(run.frame)
            if note:
                print(f"note: {note}")
            if args.ablation:
                cmp = run.comparisons(metrics=["ttft_ms", "e2e_ms"], stats=["median"])
                print("### Ablation (each variant against the baseline, medians)\n")
                print(markdown_table(cmp.select("variant", "metric", "factor", "ci_lo", "ci_hi", "verdict")))
        if len(arrivals) > 1:
            table = sweep_table(runs)
            table.write_csv(out / "sweep.csv")
            print("\n== sweep ==")
            print(markdown_table(table))
            _write_knee(runs, out, args.charts)
    print(f"\nwrote {out}/ (results.parquet, results.json, report.md, report.html)")
    if all_failed:
        print(f"workbench bench: every request failed ({', '.join(all_failed)}); exit 1", file=sys.stderr)
        return 1
    return 0
