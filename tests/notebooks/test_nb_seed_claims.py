"""notebooks/05_seed_claims.ipynb: every toggle in its scenario, then each seed claim with a verdict.

Run on the simulator alone (always; the llama.cpp section skipped with its reason) and with the llama.cpp
column (marked `extras`: the extras step of CI installs the llm extra and runs it, where a skip fails).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

from workbench.experiments.scenario_backend import REAL_SCENARIOS
from workbench.experiments.scenario_report import SEED_CLAIMS
from workbench.experiments.scenarios import SCENARIOS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RunNotebook = Callable[[str], tuple[str, dict[str, Any]]]
JUDGED = {"confirmed", "refuted", "not exercised"}


def claims_table(md: str) -> list[dict[str, str]]:
    """The rows of the static "Seed claims" Markdown table, by column name."""
    section = md.split("### Seed claims", 1)[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    rows = [[cell.strip() for cell in ln.strip("|").split(" | ")] for ln in lines]
    # the first table of the section: header, separator, then one row per claim
    head, body = rows[0], rows[2 : 2 + len(SEED_CLAIMS)]
    return [dict(zip(head, r, strict=True)) for r in body]


def check(html: str, nb: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert "### Seed claims" in md and "### Seed claims" in html
    rows = claims_table(md)
    assert [r["claim"] for r in rows] == [c.claim for c in SEED_CLAIMS]
    for c, r in zip(SEED_CLAIMS, rows, strict=True):
        # every claim has a verdict: judged when it maps to a scenario, "not applicable" with the reason if not
        if c.kind == "na":
            assert r["outcome"] == "not applicable" and r["measured (simulator)"] == c.why_na
        else:
            assert r["outcome"] in JUDGED, r
            assert r["measured (simulator)"] not in ("", "-"), r
    # the one-row-per-toggle table is there too, each toggle once
    for s in SCENARIOS:
        assert md.count(f"| {s.toggle} | {s.setting} |") == 1, s.toggle
    # static renders: the scenario chart as PNG in the last cell and in the exported page
    assert png_count(summary) >= 1 and len(PNG.findall(html)) >= 1
    text = "".join(o for c in nb["cells"] for out in c.get("outputs", []) for o in out.get("text", []))
    return rows, text


def test_seed_claims_notebook_on_the_simulator(
    run_notebook: RunNotebook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_NB05_LLM", "off")
    html, nb = run_notebook("05_seed_claims.ipynb")
    rows, text = check(html, nb)
    assert "llama.cpp column skipped: WORKBENCH_NB05_LLM=off" in text
    assert "No llama.cpp column: WORKBENCH_NB05_LLM=off" in markdown_of(final_outputs(nb))
    assert not any(k.endswith("(llama.cpp)") for k in rows[0])
    assert png_count(final_outputs(nb)) == 1


@pytest.mark.extras
def test_seed_claims_notebook_on_llamacpp(run_notebook: RunNotebook, monkeypatch: pytest.MonkeyPatch) -> None:
    from _system import require_extra

    from workbench.llm.model import LLM_MODULES

    require_extra("llm", *LLM_MODULES)
    monkeypatch.setenv("WORKBENCH_NB05_LLM", "auto")
    html, nb = run_notebook("05_seed_claims.ipynb")
    rows, text = check(html, nb)
    assert "serving gemma-3-270m" in text
    for c, r in zip(SEED_CLAIMS, rows, strict=True):
        if c.kind == "na":
            assert r["outcome (llama.cpp)"] == "not applicable"
        elif c.scenario in REAL_SCENARIOS:
            assert r["outcome (llama.cpp)"] in JUDGED, r
        else:
            assert r["outcome (llama.cpp)"] == "not measured", r
    assert png_count(final_outputs(nb)) == 2
