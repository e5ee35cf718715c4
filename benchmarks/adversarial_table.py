"""The adversarial table: every hostile-server case against the public client, case -> outcome -> seconds ->
peak RSS.

One command: `.venv/bin/python benchmarks/adversarial_table.py [--drivers sync,async] [--case NAME ...]`.
The cases and the raw-socket server are tests/adversarial/_hostile.py (the same ones the test suite runs).
Each row: how the stream ended, seconds against the case's bound (its configured timeout + 1 s), the process's
peak RSS during the case and its growth over the RSS before it (sampled every 2 ms), CPU seconds of the
whole process (client and server threads), and the verdict: `kept` (the promise held), `BROKEN` (it did not;
the reasons follow the table) or `xfail` (broken, and known: issue 11's list of what is missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "adversarial"))

from _hostile import CASES_BY_NAME, MB, Driver, Outcome, run_case, variants


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--drivers", default="sync,async", help="comma-separated: sync, async")
    ap.add_argument("--case", action="append", default=[], choices=sorted(CASES_BY_NAME), help="only these")
    args = ap.parse_args(argv)
    drivers: tuple[Driver, ...] = tuple(d for d in ("sync", "async") if d in args.drivers.split(","))
    rows: list[tuple[Outcome, str]] = []
    header = (f"{'case':<20} {'protocol':<8} {'driver':<6} {'parser':<8} {'outcome':<22} {'seconds':>7} "
              f"{'bound':>5} {'peak RSS MB':>11} {'growth MB':>9} {'CPU s':>5}  verdict")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter_ns()
    for case, protocol, driver, fast in variants(drivers):
        if args.case and case.name not in args.case:
            continue
        o = run_case(case, protocol, driver, fast)
        problems = o.problems()
        known = case.missing(protocol, fast)
        verdict = "kept" if not problems else ("xfail" if known else "BROKEN")
        rows.append((o, verdict))
        print(f"{case.name:<20} {protocol:<8} {driver:<6} {'fast' if fast else 'baseline':<8} {o.outcome:<22} "
              f"{o.seconds:>7.2f} {case.bound_s:>5.1f} {o.peak_rss / MB:>11.1f} {o.rss_growth / MB:>9.1f} "
              f"{o.cpu_s:>5.2f}  {verdict}", flush=True)
    wall = (time.perf_counter_ns() - t0) / 1e9
    kept = sum(v == "kept" for _, v in rows)
    xfail = sum(v == "xfail" for _, v in rows)
    broken = [(o, v) for o, v in rows if v == "BROKEN"]
    print(f"\n{len(rows)} runs in {wall:.1f} s: {kept} kept, {xfail} known broken (issue 11), {len(broken)} BROKEN")
    for o, verdict in rows:
        if verdict != "kept":
            reason = o.case.missing(o.protocol, o.fast) or "not known"
            print(f"  {verdict} {o.case.name} {o.protocol}/{o.driver}/{'fast' if o.fast else 'baseline'} "
                  f"[{reason}]: {'; '.join(o.problems())[:300]}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
