"""notebooks/03_semantic_cache.ipynb: hit rates, the false-hit audit and a threshold, exported offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_semantic_cache(run_notebook: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    html, nb = run_notebook("03_semantic_cache.ipynb")
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert "Semantic cache results" in md and "False-hit audit" in md
    assert "exact+semantic" in md
    assert png_count(summary) == 3
    assert "Semantic cache results" in html and len(PNG.findall(html)) >= 3
