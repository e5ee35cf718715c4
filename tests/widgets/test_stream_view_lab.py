"""StreamView in real JupyterLab + Debian chromium: a live view ends with `end` + `ack`, and the notebook
JupyterLab saves (widget state saving on) holds the exact final text, although the kernel never sent it
as a state update: the front end stored it in its model.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _system import require_binary, require_module

from workbench.lab import free_port, lab_command, lab_env

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SETUP = """\
import asyncio, hashlib, json
from workbench import Backend, Optimizations, Request
from workbench.client import AsyncClient
from workbench.simulator import Profile, Simulator
from workbench.widgets import StreamView
sim = Simulator(Profile(ttft_ms=50, token_delay_ms=2, seed=3)).start()
view = StreamView()
full_syncs = []  # every full sync of _texts/_lanes the kernel sends (headless end, fallback, set_lanes)
_sync_all = view._sync_all
view._sync_all = lambda: (full_syncs.append(1), _sync_all())[1]
view.show()
async with AsyncClient(Backend(sim.url, protocol="openai"), optimizations=Optimizations.all()) as client:
    result = await view.arun(client, Request.chat("sim-small", "go", max_tokens=1500))
"""
REPORT = """\
await asyncio.sleep(1.5)  # past the 1 s grace: a missing ack would have brought the full sync by now
st = view.get_state()
print("REPORT" + json.dumps({
    "frontend": view._frontend_seen, "fallbacks": view.fallback_syncs, "full_syncs": len(full_syncs),
    "kernel_exact": st["_texts"]["output"] == view.text() == result.text,
    "sha": hashlib.sha256(result.text.encode()).hexdigest(), "model_id": view.model_id}))
sim.stop()
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab on a free loopback port serving one notebook, widget state saving on."""
    root = tmp_path / "nb"
    root.mkdir()
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {},
            "outputs": [],
            "source": src,
        }
        for i, src in enumerate([SETUP, REPORT])
    ]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = root / "stream.ipynb"
    path.write_text(json.dumps(nb))
    # jupyterlab_widgets saves widget state only with this setting (default off).
    settings = tmp_path / "lab-settings" / "@jupyter-widgets" / "jupyterlab-manager"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text('{"saveState": true}')
    port, token = free_port(), secrets.token_hex(12)
    cmd = [
        *lab_command(root, port=port),
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
    ]
    env = lab_env(
        token,
        {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base, token, path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _saved_widget_state(path: Path, model_id: str) -> dict[str, Any]:
    saved = json.loads(path.read_text())
    states = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state: dict[str, Any] = states.get("state", {}).get(model_id, {}).get("state", {})
    return state


def test_saved_notebook_holds_the_final_text_the_front_end_stored(lab: tuple[str, str, Path]) -> None:
    chromium = require_binary("chromium", "/usr/bin/chromium")
    require_module("playwright", "drives the browser test")
    from playwright.sync_api import sync_playwright

    base, token, path = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/lab/tree/{path.name}?token={token}")
            page.wait_for_function(
                """() => {
                    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                    return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
                }""",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            report: dict[str, Any] | None = None
            deadline = time.monotonic() + 90
            while report is None and time.monotonic() < deadline:
                text = page.evaluate("document.querySelector('.jp-Notebook').textContent")
                assert "Traceback" not in text, text[-3000:]
                if "REPORT{" in text:
                    report = json.loads(text[text.index("REPORT{") + 6 :].split("}")[0] + "}")
                time.sleep(0.2)
            assert report is not None, "the report cell never printed"
            # The live path was taken: a front end said hello, acked, and no full sync was ever sent.
            assert report["frontend"] and report["fallbacks"] == 0 and report["full_syncs"] == 0, report
            assert report["kernel_exact"], report
            shown = page.evaluate("document.querySelector('.wb-sv-text').textContent")
            assert hashlib.sha256(shown.encode()).hexdigest() == report["sha"]
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            state: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while "_texts" not in state and time.monotonic() < deadline:
                time.sleep(0.3)
                state = _saved_widget_state(path, report["model_id"])
        finally:
            browser.close()
    assert "_texts" in state, "the saved notebook has no state for the view"
    assert hashlib.sha256(state["_texts"]["output"].encode()).hexdigest() == report["sha"]
    assert [m["status"] for m in state["_lanes"]] == ["done"]
