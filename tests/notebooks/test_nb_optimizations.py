"""notebooks/02_optimizations_ab.ipynb: A/B, ablation, ground truth and sweep charts, exported offline."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Toggles the runner cannot give anything to act on in this ablation (no router, no view, unique prompts).
NEVER_ACT = ("router_fast_path", "coalesce_ui", "incremental_render", "exact_cache", "early_cancel")


def _printed(nb: dict[str, Any], prefix: str) -> list[str]:
    text = "".join(o for c in nb["cells"] for out in c.get("outputs", []) for o in out.get("text", []))
    found = re.search(rf"^{re.escape(prefix)} (.*)$", text, re.MULTILINE)
    assert found, f"no {prefix!r} line printed"
    return [v.strip() for v in found.group(1).split(",") if v.strip() and v.strip() != "none"]


def _ablation_svg(nb: dict[str, Any]) -> str:
    cell = next(c for c in nb["cells"] if "".join(c["source"]).strip() == "charts.ablation_chart(acted_cmp)")
    return "".join(
        "".join(o["data"]["image/svg+xml"]) for o in cell["outputs"] if "image/svg+xml" in o.get("data", {})
    )


def test_optimizations_ab(run_notebook: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    html, nb = run_notebook("02_optimizations_ab.ipynb")
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert "A/B results" in md and "Ablation" in md and "ttft_ms" in md
    assert png_count(summary) == 5
    assert "A/B results" in html and len(PNG.findall(html)) >= 5

    # The ablation charts no toggle that did not act: the runner's facts of the run name the idle variants,
    # they are listed as "not exercised by this workload", and the chart's labels hold only the others.
    charted, idle = _printed(nb, "charted:"), _printed(nb, "not exercised by this workload (not charted):")
    for name in NEVER_ACT:
        assert f"+{name}" in idle and f"-{name}" in idle, (name, idle)
        assert f"**+{name}**: {name}:" in md
    assert "+connection_pool" in charted and not set(charted) & set(idle)
    labels = set(re.findall(r">([+-][a-z_0-9]+|all-on)<", _ablation_svg(nb)))
    assert labels == set(charted), (labels, charted)
    assert "not exercised by this workload (not charted)" in md
