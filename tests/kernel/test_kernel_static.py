"""The static fallback in a real ipykernel: a displayed StreamView's output carries text/html beside the live
widget, and after the stream (no front end attached, as under nbclient / `workbench report`) the output is
updated in place so the saved notebook holds the final text."""

from __future__ import annotations

import html

import pytest
from kernel_harness import Kernel

from workbench.simulator import Profile, Simulator

pytestmark = pytest.mark.slow

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_displayed_view_output_is_updated_with_the_final_text(kernel: Kernel) -> None:
    profile = Profile(ttft_ms=5.0, token_delay_ms=1.0, jitter=0.0)
    with Simulator(profile) as sim:
        kernel.run("from workbench.widgets import StreamView\nview = StreamView()\nview")
        out = kernel.run(f"""
from workbench._types import Backend, Request
from workbench.client import AsyncClient
async with AsyncClient(Backend({sim.url!r}, protocol="openai")) as client:
    res = await view.arun(client, Request.chat("sim-small", "hello there", max_tokens=60))
print(res.status, res.text[:50], sep="|", end="")
""")
    status, head = out.split("|", 1)
    assert status == "ok" and head
    shown = [m for _, m in kernel.log.msgs if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    data = shown[0]["content"]["data"]
    assert WIDGET_VIEW in data and "text/html" in data  # the live widget, and the fallback beside it
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [
        m["content"]
        for _, m in kernel.log.msgs
        if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
    ]
    assert len(updates) == 1
    final = updates[0]["data"]
    assert WIDGET_VIEW in final and html.escape(head) in final["text/html"] and "done" in final["text/html"]


def test_exported_report_shows_final_text_and_toggles_not_an_object_repr(tmp_path: object) -> None:
    """nbclient runs the notebook (no front end), nbconvert exports it with widget state dropped, as
    `workbench report` does: the page shows the view's final text and the panel's toggles."""
    from pathlib import Path

    import nbformat

    from workbench.notebook_report import execute_notebook, export_html

    folder = Path(str(tmp_path))
    profile = Profile(ttft_ms=5.0, token_delay_ms=1.0, jitter=0.0)
    with Simulator(profile) as sim:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(
                "from workbench.optimizations import Optimizations\n"
                "from workbench.widgets import OptimizationPanel, StreamView\n"
                "panel = OptimizationPanel(Optimizations(exact_cache=True), title='chosen toggles')\n"
                "panel"
            ),
            nbformat.v4.new_code_cell("view = StreamView()\nview"),
            nbformat.v4.new_code_cell(
                "from workbench._types import Backend, Request\n"
                "from workbench.client import AsyncClient\n"
                f"async with AsyncClient(Backend({sim.url!r}, protocol='openai')) as client:\n"
                "    res = await view.arun(client, Request.chat('sim-small', 'report me', max_tokens=40))\n"
                "print('FINAL' + res.text, end='')"
            ),
        ]
        execute_notebook(nb, cwd=folder, timeout=120)
    page = export_html(nb)
    printed = nb.cells[2].outputs[0]["text"]
    assert printed.startswith("FINAL") and len(printed) > 20
    final_text = printed.removeprefix("FINAL")
    # The view's output was displayed before the stream; it was updated in place with the final text.
    shown = nb.cells[1].outputs[0]["data"]["text/html"]
    assert html.escape(final_text) in shown and "done" in shown
    assert html.escape(final_text) in page
    assert "<td>exact_cache</td><td>on" in page and "<td>http2</td><td>off" in page  # the panel output
    assert "object at 0x" not in page
