"""Helpers for the notebook tests (a unique module name: every test area has its own conftest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)
PNG = re.compile(r'<img[^>]*src="data:image/png;base64,')


def final_outputs(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """Outputs of the last code cell that displays something (the static summary)."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    return list(cells[-1]["outputs"])


def markdown_of(outputs: list[dict[str, Any]]) -> str:
    return "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)


def png_count(outputs: list[dict[str, Any]]) -> int:
    return sum(1 for o in outputs if "image/png" in o.get("data", {}))
