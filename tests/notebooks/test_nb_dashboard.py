"""notebooks/00_dashboard.ipynb: the Dashboard on the simulator, two A/Bs, both lanes, static renders."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import final_outputs, markdown_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_dashboard_notebook(run_notebook: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    html, nb = run_notebook("00_dashboard.ipynb")
    md = markdown_of(final_outputs(nb))
    # Both runs' static renders: each lane's toggles and final text.
    assert "A/B 1: baseline vs connection_pool + fast_parse" in md and "A/B 2:" in md
    assert "- A: `baseline`" in md and "- B: `connection_pool+fast_parse`" in md
    assert "- B: `connection_pool+fast_parse+exact_cache`" in md
    for lane in ("A", "B"):
        assert re.search(rf"\*\*{lane}\*\* — done · TTFT \d+ ms", md), md[:2000]
    # The second run replays B's repeats from B's cache and never A's: each lane ran with its own settings.
    assert "cache exact" in md.split("A/B 2:")[1]
    assert md.count("A/B done") == 2
    # The exported HTML carries the charts (vl-convert SVG) and the texts without a kernel.
    assert html.count("<svg") >= 2 and "wb-dashboard-static" in html
    # The saved notebook keeps the widgets' final state: both lanes' final texts.
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    texts = [m["state"]["_texts"] for m in state.values() if "_texts" in m["state"]]
    assert any(t.get("A") for t in texts) and any(t.get("B") for t in texts)
