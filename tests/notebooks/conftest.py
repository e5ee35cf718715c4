"""Run a shipped notebook headless through `workbench report` and hand back its HTML and executed JSON."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workbench import report

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)
PNG = re.compile(r'<img[^>]*src="data:image/png;base64,')


@pytest.fixture
def run_notebook(tmp_path: Path) -> Callable[[str], tuple[str, dict[str, Any]]]:
    def run(name: str) -> tuple[str, dict[str, Any]]:
        src = tmp_path / name
        shutil.copy(NOTEBOOKS / name, src)  # never touch the shipped file
        html_path, executed = tmp_path / "out.html", tmp_path / "executed.ipynb"
        rc = report.main([str(src), "-o", str(html_path), "--executed", str(executed), "--timeout", "180"])
        nb = json.loads(executed.read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert rc == 0 and not errors, errors
        html = html_path.read_text()
        assert not EXTERNAL_SCRIPT.search(html), "the report would load a script from the network"
        assert not report.external_urls(html), report.external_urls(html)
        return html, nb

    return run


def final_outputs(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """Outputs of the last code cell that displays something (the static summary)."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    return list(cells[-1]["outputs"])


def markdown_of(outputs: list[dict[str, Any]]) -> str:
    return "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)


def png_count(outputs: list[dict[str, Any]]) -> int:
    return sum(1 for o in outputs if "image/png" in o.get("data", {}))
