"""Every field of `Optimizations` changes what the client, cache, runner or view does.

One check per field, run on the simulator (in a child process) in the toggle's own scenario
(`workbench.experiments.scenarios`): the scenario must report that the toggle acted (a connection reused, an
HTTP/2 stream, a cache hit, a warm-up request the server saw, requests in flight together, a stop that
ended the read, a skipped classification, fewer view messages or bytes) and, for the toggles whose effect is
large on the simulator, a detectable difference in its metric. The test iterates over
`dataclasses.fields(Optimizations)`: a new field without a scenario fails here.
"""

from __future__ import annotations

import dataclasses

import pytest

from workbench.experiments.scenarios import SCENARIOS, run_scenarios, scenario_for
from workbench.optimizations import Optimizations

# Toggles whose effect on the simulator is strong enough that a small n must find it (CI excludes 1, and
# in the helpful direction). The others (fast_parse, http2) must act; their effect can be nil or negative
# on loopback, which the scenario table reports as such.
MUST_HELP = {
    "connection_pool",
    "coalesce_ui",
    "incremental_render",
    "exact_cache",
    "semantic_cache",
    "disk_cache",
    "prewarm",
    "concurrency",
    "early_cancel",
    "router_fast_path",
}
SMALL_N = {"http2": 16, "parse": 4, "router": 100}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Optimizations)])
def test_toggle_acts(name: str) -> None:
    try:
        scenario = scenario_for(name)
    except KeyError:
        pytest.fail(f"Optimizations.{name} has no scenario: add one to workbench.experiments.scenarios")
    res = run_scenarios([name], n=SMALL_N.get(scenario.key))
    row = res.table.row(0, named=True)
    assert row["toggle"] == name
    assert row["verdict"] != "not exercised", f"{name} did not act in its scenario: {row['detail']}"
    if name in MUST_HELP:
        assert row["verdict"] == scenario.words[0], f"{name}: {row['verdict']} ({row['detail']})"
        assert row["ci_lo"] > 1.0


def test_checks_cover_every_field() -> None:
    assert {s.toggle for s in SCENARIOS} == {f.name for f in dataclasses.fields(Optimizations)}
