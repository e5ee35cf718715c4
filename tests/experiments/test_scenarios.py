"""The scenario framework: one scenario per toggle, verdict words, the table, chart, seed claims and the CLI."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from workbench.experiments.bench_cli import main as bench_main
from workbench.experiments.scenario_report import (
    SEED_CLAIMS,
    scenario_chart,
    scenario_markdown,
    seed_claims,
)
from workbench.experiments.scenarios import (
    SCENARIOS,
    Measured,
    Scenario,
    ScenarioResult,
    _row,
    covered_toggles,
    run_scenarios,
    scenario_for,
)
from workbench.optimizations import Optimizations


def test_every_toggle_has_exactly_one_scenario() -> None:
    names = [f.name for f in dataclasses.fields(Optimizations)]
    assert covered_toggles() == set(names)
    assert len({s.toggle for s in SCENARIOS}) == len(SCENARIOS)
    assert len({s.key for s in SCENARIOS}) == len(SCENARIOS)
    assert scenario_for("pool") is scenario_for("connection_pool")
    with pytest.raises(KeyError, match="known: pool"):
        scenario_for("nope")


def _scn(higher: bool = False) -> Scenario:
    return Scenario("k", "exact_cache", "s", "e2e_ms", lambda n, seed: Measured([], [], False), 4, higher)


@pytest.mark.parametrize(
    ("base", "on", "exercised", "higher", "want"),
    [
        ([10.0, 11, 12, 10, 11, 12], [5.0, 5.5, 6, 5, 5.5, 6], True, False, "faster"),
        ([5.0, 5.5, 6, 5, 5.5, 6], [10.0, 11, 12, 10, 11, 12], True, False, "slower"),
        ([5.0, 5.5, 6, 5, 5.5, 6], [10.0, 11, 12, 10, 11, 12], True, True, "faster"),
        ([10.0, 12, 9, 11, 13, 8], [11.0, 9, 12, 10, 8, 13], True, False, "no detectable difference"),
        ([10.0, 11, 12, 10, 11, 12], [5.0, 5.5, 6, 5, 5.5, 6], False, False, "not exercised"),
        ([10.0], [5.0], True, False, "not enough data"),
    ],
)
def test_verdict_words(base: list[float], on: list[float], exercised: bool, higher: bool, want: str) -> None:
    row = _row(_scn(higher), Measured(base, on, exercised, why_not="nothing hit"), 0.1, 0)
    assert row["verdict"] == want
    if want == "not exercised":
        assert "not exercised: nothing hit" in row["detail"]


def test_zero_cost_does_not_make_an_infinite_factor() -> None:
    row = _row(_scn(), Measured([100.0, 101, 99, 100], [0.0, 0.0, 0.0, 0.0], True), 0.1, 0)
    assert row["verdict"] == "faster" and row["factor"] < 1e6


@pytest.fixture(scope="module")
def small_run() -> ScenarioResult:
    # Real simulator runs (child process): the cache and early-cancel scenarios act strongly even at small n.
    return run_scenarios(["exact", "cancel"], n=6)


def test_scenarios_on_the_simulator_find_the_effects(small_run: ScenarioResult) -> None:
    t = small_run.table
    assert t.get_column("toggle").to_list() == ["exact_cache", "early_cancel"]
    assert t.get_column("verdict").to_list() == ["faster", "faster"]
    assert (t.get_column("ci_lo") > 1.0).all()
    cancel = small_run.measured["cancel"]
    # read to the end without early cancel: ~116 tokens at 2 ms each are wasted after the stop
    assert cancel.numbers["base_stop_ms"] > 10 * cancel.numbers["cancel_stop_ms"]
    md = scenario_markdown(t)
    assert md.count("\n") == 3 and "exact_cache" in md and "early_cancel" in md
    chart = scenario_chart(t).to_dict()
    assert chart["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"


def test_seed_claims_judged_against_the_run(small_run: ScenarioResult) -> None:
    claims = seed_claims(small_run)
    assert claims.height == len(SEED_CLAIMS)
    by = {r["claim"]: r for r in claims.iter_rows(named=True)}
    assert by["sub-100 ms cached responses"]["outcome"] == "confirmed"
    assert by["cancellation response 100 ms -> 1 ms"]["outcome"] in ("confirmed", "refuted")
    assert by["5-15 ms saved per request by connection pooling"]["outcome"] == "not run"
    assert by["cache key generation 3.3x faster"]["outcome"] == "not applicable"


def test_not_exercised_rows_are_not_charted() -> None:
    table = pl.DataFrame(
        [
            _row(_scn(), Measured([10.0, 11, 12, 10], [5.0, 5.5, 6, 5], True), 0.1, 0),
            {
                **_row(_scn(), Measured([10.0, 11, 12, 10], [5.0, 5.5, 6, 5], False), 0.1, 0),
                "toggle": "prewarm",
            },
        ]
    )
    spec = scenario_chart(table).to_dict()
    assert "prewarm" in str(spec["title"])
    values = next(iter(spec["datasets"].values()))
    assert [v["toggle"] for v in values] == ["exact_cache"]


def test_bench_scenarios_cli(tmp_path, capsys) -> None:
    assert bench_main(["--scenarios", "cancel", "--out", str(tmp_path), "--no-charts"]) == 0
    out = capsys.readouterr().out
    assert "early_cancel" in out and "## Seed claims" in out
    assert (tmp_path / "scenarios.csv").exists() and (tmp_path / "seed_claims.csv").exists()
    assert bench_main(["--scenarios", "warp", "--out", str(tmp_path)]) == 2
    assert "no scenario 'warp'" in capsys.readouterr().err
