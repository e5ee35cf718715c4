"""The seed claims beside a second backend's results, and the bench report's "Seed claims" section."""

from __future__ import annotations

from pathlib import Path

from workbench import Backend, Optimizations
from workbench.experiments import Workload, compare
from workbench.experiments.bench_report import html_report, markdown_report, seed_claims_section
from workbench.experiments.results import RunResult
from workbench.experiments.scenario_report import SEED_CLAIMS, seed_claims
from workbench.experiments.scenarios import run_scenarios
from workbench.simulator import Profile, Simulator


def test_a_second_backend_adds_its_own_columns() -> None:
    sim = run_scenarios(["router"], n=40)
    other = run_scenarios(["router", "coalesce"], n=3)
    claims = seed_claims(sim, others={"elsewhere": other})
    assert claims.columns[-2:] == ["measured (elsewhere)", "outcome (elsewhere)"]
    by = {r["claim"]: r for r in claims.iter_rows(named=True)}
    batching = "16 ms UI batching (~60 updates/s) instead of one per message"
    # coalesce ran only on the second backend: judged there, "not run" in the first
    assert by[batching]["outcome"] == "not run"
    assert by[batching]["outcome (elsewhere)"] in ("confirmed", "refuted")
    assert "less" in by[batching]["measured (elsewhere)"]
    # a scenario the second backend did not run says so, naming it; a claim with no toggle stays n/a
    pooling = by["5-15 ms saved per request by connection pooling"]
    assert pooling["outcome (elsewhere)"] == "not measured" and "'pool' not run on elsewhere" in str(
        pooling["measured (elsewhere)"]
    )
    assert by["cache key generation 3.3x faster"]["outcome (elsewhere)"] == "not applicable"
    assert claims.height == len(SEED_CLAIMS)


def test_bench_report_has_a_seed_claims_section_when_the_run_carries_them() -> None:
    with Simulator(Profile.instant()) as s:
        run = compare(
            Workload.synthetic(3, output_tokens=4, model="sim-small"),
            {"baseline": Optimizations(), "pool": Optimizations(connection_pool=True)},
            backend=Backend(s.url, protocol="openai"),
            progress=False,
        )
    assert seed_claims_section(run) is None and "Seed claims" not in markdown_report(run)
    claims = seed_claims(run_scenarios(["router"], n=40))
    run.meta["seed_claims"] = claims.to_dicts()
    md, page = markdown_report(run), html_report(run)
    assert "### Seed claims" in md and "<h2>Seed claims</h2>" in page
    for c in SEED_CLAIMS:
        assert c.claim in md
    assert "not applicable" in md and "not run" in md


def test_seed_claims_survive_a_saved_run(tmp_path: Path) -> None:
    with Simulator(Profile.instant()) as s:
        run = compare(
            Workload.synthetic(2, output_tokens=4, model="sim-small"),
            {"baseline": Optimizations()},
            backend=Backend(s.url, protocol="openai"),
            progress=False,
        )
    run.meta["seed_claims"] = seed_claims(run_scenarios(["router"], n=40)).to_dicts()
    back = RunResult.load(run.save(tmp_path / "run"))
    section = seed_claims_section(back)
    assert section is not None and section[1].height == len(SEED_CLAIMS)
