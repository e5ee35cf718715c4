"""Run a shipped notebook headless through `workbench report` and hand back its HTML and executed JSON."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _nb_helpers import EXTERNAL_SCRIPT, NOTEBOOKS

from workbench import notebook_report


@pytest.fixture
def run_notebook(tmp_path: Path) -> Callable[[str], tuple[str, dict[str, Any]]]:
    def run(name: str) -> tuple[str, dict[str, Any]]:
        src = tmp_path / name
        shutil.copy(NOTEBOOKS / name, src)  # never touch the shipped file
        html_path, executed = tmp_path / "out.html", tmp_path / "executed.ipynb"
        rc = notebook_report.main([str(src), "-o", str(html_path), "--executed", str(executed), "--timeout", "180"])
        nb = json.loads(executed.read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert rc == 0 and not errors, errors
        html = html_path.read_text()
        assert not EXTERNAL_SCRIPT.search(html), "the report would load a script from the network"
        assert not notebook_report.external_urls(html), notebook_report.external_urls(html)
        return html, nb

    return run
