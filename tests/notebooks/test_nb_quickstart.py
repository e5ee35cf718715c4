"""notebooks/01_quickstart.ipynb runs headless on the simulator and its report carries the results offline."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from _nb_helpers import PNG, final_outputs, markdown_of, png_count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_quickstart(run_notebook: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    html, nb = run_notebook("01_quickstart.ipynb")
    summary = final_outputs(nb)
    md = markdown_of(summary)
    assert "Quickstart results" in md and "chosen vs baseline" in md
    assert png_count(summary) == 3
    assert "Quickstart results" in html and "chosen vs baseline" in html
    assert len(PNG.findall(html)) >= 3
    # The static copy of the stream view holds exactly the text whose checksum the kernel printed.
    text = "".join(o for c in nb["cells"] for out in c.get("outputs", []) for o in out.get("text", []))
    sha = re.search(r"sha256 of the final text: ([0-9a-f]{64})", text)
    assert sha is not None
    static_md = next("".join(o["data"]["text/markdown"]) for o in summary if "text/html" in o.get("data", {}))
    streamed = static_md.split("```text\n", 1)[1].rsplit("\n```", 1)[0]
    assert hashlib.sha256(streamed.encode()).hexdigest() == sha.group(1)
