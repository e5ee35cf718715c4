"""The quickstart in a real browser: JupyterLab on loopback + Debian chromium, every non-local request blocked.

Checks what a user sees: the answer grows while it streams and ends exactly equal to the kernel's text, a
chart renders, and every cell finishes. Leaves a screenshot in data/results/browser-quickstart.png.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
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

from workbench.lab import free_port, lab_command, lab_env

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
SCREENSHOT = REPO / "data" / "results" / "browser-quickstart.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving a temporary copy of notebooks/ on a free loopback port; yields (base URL, token)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    port, token = free_port(), secrets.token_hex(12)
    # Every cell in the DOM (no virtual scrolling), so the test sees outputs that are off screen.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # No "get Jupyter news?" toast over the screenshot (and no news fetch to block).
    apputils = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    cmd = [
        *lab_command(root, port=port),
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
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
        yield base, token
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


def test_quickstart_runs_in_a_real_browser(lab: tuple[str, str]) -> None:
    chromium = require_binary("chromium", "/usr/bin/chromium")
    require_module("playwright", "drives the browser test")
    from playwright.sync_api import Route, sync_playwright

    base, token = lab
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
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", guard)
            page.goto(f"{base}/lab/tree/01_quickstart.ipynb?token={token}")
            page.wait_for_function(
                """() => {
                    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                    return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
                }""",
                timeout=60_000,
            )
            # Saved outputs (and the saved widget state) must not be mistaken for a fresh run.
            page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
            page.wait_for_function("document.querySelectorAll('.wb-sv-text').length === 0", timeout=10_000)
            # Sample the live text in the page itself (every 20 ms), so slow round trips cannot miss growth.
            page.evaluate(
                """() => {
                    window.__lengths = [];
                    window.__sampler = setInterval(() => {
                        const e = document.querySelector('.wb-sv-text');
                        const n = e ? e.textContent.length : -1;
                        const l = window.__lengths;
                        if (n >= 0 && (l.length === 0 || l[l.length - 1] !== n)) l.push(n);
                    }, 20);
                }"""
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            sha_re = re.compile(r"sha256 of the final text: ([0-9a-f]{64})")
            deadline = time.monotonic() + 90
            kernel_sha = None
            while time.monotonic() < deadline:
                m = sha_re.search(page.evaluate("document.querySelector('.jp-Notebook').textContent"))
                if m:
                    kernel_sha = m.group(1)
                    break
                time.sleep(0.2)
            page.evaluate("clearInterval(window.__sampler)")
            lengths: list[int] = page.evaluate("window.__lengths")
            assert kernel_sha is not None, f"the checksum cell never ran; text lengths seen: {lengths}"
            grew = sum(1 for a, b in itertools.pairwise(lengths) if b > a)
            assert grew >= 2, f"text did not grow progressively: {lengths}"
            shown = page.evaluate("document.querySelector('.wb-sv-text').textContent")
            assert hashlib.sha256(shown.encode()).hexdigest() == kernel_sha, "widget text differs from the kernel's"

            # Every cell finishes: the last code cell gets an execution count and none stays queued.
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                        .map(p => p.textContent.trim());
                    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p));
                }""",
                timeout=120_000,
            )
            prompts = page.evaluate(
                "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"
            )
            assert not any("*" in p for p in prompts), prompts
            errors = page.evaluate(
                "[...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)"
                ".filter(t => t.includes('Traceback'))"
            )
            assert not errors, errors[0][:2000]
            # The live chart grid rendered (vega-embed draws a canvas or an svg), offline.
            page.wait_for_function(
                "document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length > 0", timeout=20_000
            )
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".vega-embed").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT), full_page=False)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    # Whatever tried to leave the machine was blocked; nothing the notebook needs came from there.
    print(f"text lengths seen while streaming: {lengths}")
    print(f"blocked {len(blocked)} non-local request(s): {sorted(set(blocked))[:5]}")
