"""`workbench report` on small notebooks: real kernel (this interpreter), offline HTML, errors reported."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import nbformat.v4 as v4

from workbench import lab, notebook_report

EXTERNAL_SCRIPT = re.compile(r"<script[^>]*src\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)


def _write(path: Path, cells: list[nbformat.NotebookNode]) -> Path:
    nb = v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_report_runs_with_this_python_and_exports_offline_html(tmp_path: Path, capsys: object) -> None:
    src = _write(
        tmp_path / "t.ipynb",
        [
            v4.new_markdown_cell("# Report title"),
            v4.new_code_cell("import sys\nprint('PREFIX:' + sys.prefix)"),
            v4.new_code_cell(
                "import polars as pl\nfrom workbench import charts\n"
                "f = pl.DataFrame({'variant': ['a', 'b'] * 20, 'ttft_ms': [float(i) for i in range(40)]})\n"
                "charts.static(charts.ttft_histogram(f), 'png')"
            ),
            v4.new_code_cell("from IPython.display import Markdown\nMarkdown('**final text 42**')"),
        ],
    )
    out = tmp_path / "out" / "t.html"
    executed = tmp_path / "t.executed.ipynb"
    assert notebook_report.main([str(src), "-o", str(out), "--executed", str(executed), "--timeout", "120"]) == 0
    html = out.read_text()
    assert "Report title" in html and "final text 42" in html
    assert re.search(r'<img[^>]*src="data:image/png;base64,', html)
    assert not EXTERNAL_SCRIPT.search(html), "HTML would load a script from the network"
    assert "cdnjs.cloudflare.com" not in html
    prefix = re.search(r"PREFIX:(/[^\s<]+)", html)
    assert prefix is not None and prefix.group(1) == sys.prefix  # the kernel ran in this environment
    nb = json.loads(executed.read_text())
    assert all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


def test_report_fails_on_a_cell_error_but_still_writes_html(tmp_path: Path) -> None:
    src = _write(tmp_path / "bad.ipynb", [v4.new_code_cell("print('before')"), v4.new_code_cell("1 / 0")])
    out = tmp_path / "bad.html"
    assert notebook_report.main([str(src), "-o", str(out)]) == 1
    assert "ZeroDivisionError" in out.read_text()
    assert notebook_report.main([str(tmp_path / "missing.ipynb")]) == 2


def test_strip_external_and_slim_widget_state() -> None:
    html = (
        '<head><script src="https://cdn.example/require.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/x.css">'
        '<script type="module">const m = await import("https://cdn.example/mermaid.mjs");</script>'
        "<script>var local = 1;</script></head>"
    )
    clean = notebook_report.strip_external(html)
    assert notebook_report.external_urls(clean) == []
    assert "var local = 1" in clean and "mermaid" not in clean
    nb = v4.new_notebook()
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {"big": {"state": {"_esm": "x" * 300_000}}, "small": {"state": {"text": "hi"}}}
        }
    }
    assert notebook_report.slim_widget_state(nb) == ["big"]
    assert list(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]) == ["small"]


def test_lab_command_is_loopback_with_token(tmp_path: Path, capsys: object) -> None:
    cmd = lab.lab_command(tmp_path, port=12345)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--no-browser" in cmd
    assert not any("token" in c.lower() for c in cmd)  # the token travels in the environment, never argv
    assert lab.lab_env("t0k", {"JUPYTER_TOKEN_FILE": "/x"}) == {"JUPYTER_TOKEN": "t0k"}
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert lab.main(["--dir", str(tmp_path), "--print-command", "--port", "12345"]) == 0
    assert lab.main(["--dir", str(tmp_path / "nope")]) == 2
