"""`workbench bench --scenarios[=pool,http2,...]`: each toggle in its scenario on the simulator, one row each,
then the seed reports' claims beside what was measured. Writes scenarios.csv, seed_claims.csv, report.md
and report.html (inline SVG chart) to --out."""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from workbench._exceptions import ConfigError
from workbench.experiments.scenario_report import (
    scenario_markdown,
    seed_claims,
    seed_claims_markdown,
)
from workbench.experiments.scenarios import SCENARIOS, run_scenarios, scenario_for

__all__ = ["run_scenarios_cli"]


def run_scenarios_cli(spec: str, out: str | None, *, charts: bool = True) -> int:
    keys = None if spec in ("all", "") else [k.strip() for k in spec.split(",") if k.strip()]
    if keys:
        try:
            for k in keys:
                scenario_for(k)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]), hint="e.g. --scenarios pool,http2,exact") from None
    folder = Path(out or f"data/results/scenarios-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    n_all = len(keys) if keys else len(SCENARIOS)
    done = [0]

    def progress(msg: str) -> None:
        done[0] += 1
        print(f"[{done[0]}/{n_all}] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    res = run_scenarios(keys, progress=progress)
    claims = seed_claims(res)
    table_md = scenario_markdown(res.table)
    claims_md = seed_claims_markdown(claims)
    took = time.perf_counter() - t0
    head = (
        "## Scenarios: each toggle where its effect exists (simulator in a child process)\n\n"
        "factor > 1: the toggle helps (baseline/toggle for costs, toggle/baseline for rates); median, "
        "95% bootstrap CI; n per arm is small so the set runs in a few minutes.\n\n"
    )
    md = f"{head}{table_md}\n\n## Seed claims\n\n{claims_md}\n\n_{took:.0f} s on this machine_\n"
    print(md)
    res.table.write_csv(folder / "scenarios.csv")
    claims.write_csv(folder / "seed_claims.csv")
    (folder / "report.md").write_text(md)
    svg = ""
    if charts:
        try:
            from workbench.charts import to_svg

            svg = to_svg(res.chart())
        except Exception as exc:  # the tables are the result; a chart failing must not lose them
            print(f"chart skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>workbench scenarios</title></head><body>"
        f"<h1>workbench bench --scenarios</h1>{svg}<pre>{html.escape(md)}</pre></body></html>"
    )
    (folder / "report.html").write_text(page)
    print(f"wrote {folder}/ (scenarios.csv, seed_claims.csv, report.md, report.html)")
    return 0
