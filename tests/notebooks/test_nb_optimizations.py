"""notebooks/02_optimizations_ab.ipynb: A/B, ablation, ground truth and sweep charts, exported offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_optimizations_ab(run_notebook: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    html, nb = run_notebook("02_optimizations_ab.ipynb")
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert "A/B results" in md and "Ablation" in md and "ttft_ms" in md
    assert png_count(summary) == 5
    assert "A/B results" in html and len(PNG.findall(html)) >= 5
