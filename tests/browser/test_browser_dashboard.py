"""The Dashboard in a real browser: JupyterLab on loopback + Debian chromium, every non-local request blocked.

Opens notebooks/00_dashboard.ipynb, runs the cells that show the Dashboard, ticks a toggle in panel A, clicks
A/B and checks what a user sees: both lanes' text grows while they stream, the toggle reached lane A only
(its repeats come from its cache), the chart grid is redrawn with the run's data, and the notebook saved
from JupyterLab keeps the Dashboard's final state (`workbench lab`'s "save widget state" setting).
Leaves a screenshot in data/results/browser-dashboard.png.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _system import require_binary, require_module

from workbench.lab import free_port, lab_command, lab_env, lab_settings_dir

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "00_dashboard.ipynb"
SCREENSHOT = REPO / "data" / "results" / "browser-dashboard.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab as `workbench lab` starts it (its app settings), on a copy of notebook 00.
    Yields (base URL, token, notebook folder)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(12)
    user = tmp_path / "lab-settings"
    tracker = user / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    apputils = user / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    cmd = [
        *lab_command(root, port=port, app_settings_dir=lab_settings_dir(tmp_path / "app-settings")),
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={user}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
    ]
    log = (tmp_path / "lab.log").open("wb")
    env = lab_env(token, {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")})
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
        yield base, token, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in ("127.0.0.1", "localhost")


# A fingerprint of what the chart grid draws: vega renders to canvas (pixels) or svg (markup).
CHART_SIGNATURE = """() => [...document.querySelectorAll('.wb-dashboard .vega-embed')].map(e => {
    const c = e.querySelector('canvas');
    if (c) return c.toDataURL();
    const s = e.querySelector('svg');
    return s ? s.outerHTML : '';
}).join('|')"""


def test_dashboard_ab_in_a_real_browser(lab: tuple[str, str, Path]) -> None:
    chromium = require_binary("chromium", "/usr/bin/chromium")
    require_module("playwright", "drives the browser test")
    from playwright.sync_api import Route, sync_playwright

    base, token, root = lab
    # `workbench lab`'s app settings turn "save widget state" on (as a default a user's setting overrides).
    url = f"{base}/lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin?token={token}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        plugin = json.load(resp)
    assert plugin["schema"]["properties"]["saveState"]["default"] is True, plugin["schema"]["properties"]

    blocked: list[str] = []

    def guard(route: Route) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.route("**/*", guard)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_function(
                """() => {
                    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                    return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
                }""",
                timeout=60_000,
            )
            # Saved outputs (and saved widget state) must not be mistaken for this run.
            page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.wait_for_function("document.querySelectorAll('.wb-dashboard').length === 0", timeout=10_000)
            # Run the setup cell and the cell that shows the Dashboard; the rest is what the user clicks.
            page.evaluate(
                """async () => {
                    const app = window.jupyterapp, nb = app.shell.currentWidget.content;
                    const i = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes('dash = Dashboard('));
                    nb.activeCellIndex = i;
                    await app.commands.execute('notebook:run-all-above');
                    nb.activeCellIndex = i;
                    await app.commands.execute('notebook:run-cell');
                }"""
            )
            page.wait_for_selector(".wb-dashboard .vega-embed", timeout=90_000)
            page.wait_for_function(f"({CHART_SIGNATURE})().length > 0", timeout=30_000)
            before = page.evaluate(CHART_SIGNATURE)

            # Tick exact_cache in panel A (open its accordion section first).
            page.locator(".wb-dashboard").get_by_text("A (Run)", exact=True).first.click()
            box = page.locator(".wb-dashboard .widget-checkbox").filter(has_text="exact_cache").first
            box.locator("input").check()

            # Sample both lanes' text in the page itself (every 20 ms), so slow round trips cannot miss growth.
            page.evaluate(
                """() => {
                    window.__lanes = [[], []];
                    window.__sampler = setInterval(() => {
                        const els = document.querySelectorAll('.wb-dashboard .wb-sv-text');
                        if (els.length !== 2) return;
                        els.forEach((e, i) => {
                            const l = window.__lanes[i], n = e.textContent.length;
                            if (l.length === 0 || l[l.length - 1] !== n) l.push(n);
                        });
                    }, 20);
                }"""
            )
            page.locator(".wb-dashboard button").filter(has_text="A/B").first.click()
            page.wait_for_function(
                "document.querySelector('.wb-dashboard').textContent.includes('A/B done')", timeout=90_000
            )
            page.evaluate("clearInterval(window.__sampler)")
            lanes: list[list[int]] = page.evaluate("window.__lanes")
            for name, seen in zip("AB", lanes, strict=True):
                grew = sum(1 for a, b in itertools.pairwise(seen) if b > a)
                assert grew >= 2, f"lane {name} did not stream (text lengths seen: {seen})"

            heads = page.evaluate(
                "[...document.querySelectorAll('.wb-dashboard .wb-sv-lane')].map(e => e.textContent)"
            )
            assert len(heads) == 2, heads
            # The click reached lane A only: A's repeats come from A's cache; B has none.
            assert "cache exact" in heads[0] and "cache exact" not in heads[1], heads

            # The charts were redrawn with the run's data.
            page.wait_for_function(f"({CHART_SIGNATURE})() !== {json.dumps(before)}", timeout=30_000)
            errors = page.evaluate(
                "[...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)"
                ".filter(t => t.includes('Traceback'))"
            )
            assert not errors, errors[0][:2000]

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".wb-dashboard .wb-sv").last.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT), full_page=False)

            # Saved from JupyterLab, the notebook keeps the Dashboard's final state (both lanes' texts).
            texts = [
                page.evaluate(f"document.querySelectorAll('.wb-dashboard .wb-sv-text')[{i}].textContent")
                for i in range(2)
            ]
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            deadline = time.monotonic() + 30
            saved: list[str] = []
            while time.monotonic() < deadline and sorted(saved) != sorted(texts):
                time.sleep(0.5)
                nb = json.loads((root / NOTEBOOK.name).read_text())
                state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
                saved = [
                    t for m in state.values() for t in m["state"].get("_texts", {}).values() if t in texts
                ]
            assert sorted(saved) == sorted(texts), "the saved notebook lost the Dashboard's final texts"
        finally:
            browser.close()
    print(f"lane text lengths seen while streaming: {lanes}")
    print(f"blocked {len(blocked)} non-local request(s): {sorted(set(blocked))[:5]}")
