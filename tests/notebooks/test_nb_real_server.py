"""notebooks/04_real_server.ipynb: notebook 02's A/B against llama.cpp, or against its trace replayed.

Run both ways: on the shipped trace (always; `make test` has no llm extra) and on the real llama.cpp server
(marked `extras`: the extras step of CI installs the llm extra and runs it, where a skip fails). The notebook
must say which one it ran on, in its output and in the exported HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RunNotebook = Callable[[str], tuple[str, dict[str, Any]]]
VS_TRACE = re.compile(
    r"TTFT p50: ([\d.]+) ms here, ([\d.]+) ms recorded .*\n- ITL p50: ([\d.]+) ms here, ([\d.]+) ms"
)


def check(html: str, nb: dict[str, Any], ran_on: str) -> tuple[float, float, float, float]:
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert f"Ran on {ran_on}" in md and f"Ran on {ran_on}" in html
    assert "A/B results" in md and "Ablation" in md and "against the recorded trace" in md
    assert png_count(summary) == 5 and len(PNG.findall(html)) >= 5
    found = VS_TRACE.search(md)
    assert found, md
    ttft_here, ttft_rec, itl_here, itl_rec = (float(x) for x in found.groups())
    return ttft_here, ttft_rec, itl_here, itl_rec


def test_real_server_notebook_on_the_shipped_trace(
    run_notebook: RunNotebook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_NB04_BACKEND", "trace")
    html, nb = run_notebook("04_real_server.ipynb")
    ttft_here, ttft_rec, itl_here, itl_rec = check(html, nb, "trace replay")
    assert "llamacpp-gemma3-270m.jsonl" in markdown_of(final_outputs(nb))
    # The replay played the recording back (tests/simulator/test_trace_replay.py holds it to 5%; here a
    # loose bound, as the notebook's 8 requests share the machine with the rest of the suite). The latency
    # model it replaces would be far off: 120 ms to the first token, 15 ms a token.
    assert abs(ttft_here / ttft_rec - 1) <= 0.2 and abs(itl_here / itl_rec - 1) <= 0.2


@pytest.mark.extras
def test_real_server_notebook_on_llamacpp(run_notebook: RunNotebook, monkeypatch: pytest.MonkeyPatch) -> None:
    from _system import require_extra

    from workbench.llm.model import LLM_MODULES

    require_extra("llm", *LLM_MODULES)
    monkeypatch.setenv("WORKBENCH_NB04_BACKEND", "llm")
    html, nb = run_notebook("04_real_server.ipynb")
    check(html, nb, "llama.cpp")
