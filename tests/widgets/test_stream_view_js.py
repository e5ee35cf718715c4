"""stream_view.js in a real Chromium page (fake anywidget model, real DOM): what a browser view ends up showing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _system import require_binary
from widget_fakes import FakeClock, RecordingComm

from workbench._types import TextDelta
from workbench.widgets import StreamView
from workbench.widgets import stream_view as sv

DRIVER = Path(__file__).with_name("stream_view_driver.js").read_text()
ESM = Path(sv.__file__).with_name("stream_view.js").read_text()


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    chromium = require_binary("chromium", "chromium-browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        pg = browser.new_page()
        pg.set_content("<!doctype html><html><body></body></html>")
        yield pg
        browser.close()


def replay(page: Any, rec: RecordingComm, *, init_at: int = 0, render_at: int = 0) -> dict[str, Any]:
    opened = next(d for kind, d, _ in rec.log if kind == "comm_open")["data"]["state"]
    msgs = [d["data"] for _, d, _ in rec.widget_msgs()]
    payload = {"esm": ESM, "state": opened, "messages": msgs, "init_at": init_at, "render_at": render_at}
    out: dict[str, Any] = page.evaluate(DRIVER, payload)
    return out


def stream(view: StreamView, clock: FakeClock, lane: str, n: int) -> str:
    view.start(lane)
    parts = []
    for i in range(n):
        clock.advance(1 / 5000)
        parts.append(f"{lane}{i} ")
        view.push(lane, TextDelta(parts[-1], clock()))
    return "".join(parts)


@pytest.mark.parametrize("incremental", [True, False])
def test_view_shows_exact_final_text_and_figures(
    page: Any, comms: list[RecordingComm], clock: FakeClock, incremental: bool
) -> None:
    view = StreamView(lanes=["A", "B"], incremental_render=incremental, max_naive_updates=None, clock=clock)
    a = stream(view, clock, "A", 1500)
    b = stream(view, clock, "B", 700)
    view.finish("A")
    view.fail("B", "ServerStreamError: boom")
    out = replay(page, view.comm)
    assert out["lanes"]["A"]["text"] == a and out["lanes"]["B"]["text"] == b
    assert out["lanes"]["A"]["stats"].startswith("done") and "1500 tokens" in out["lanes"]["A"]["stats"]
    assert out["lanes"]["B"]["error"] == "ServerStreamError: boom"
    assert out["sent"] == []


def test_live_text_while_streaming_and_late_view(
    page: Any, comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock)
    text = stream(view, clock, "output", 3000)
    clock.advance(1)
    view.push("output", "!")  # flushes the tail: the browser now has everything
    n = len(view.comm.widget_msgs())
    out = replay(page, view.comm, render_at=n // 2)  # a view shown mid-stream still shows it all
    assert out["lanes"]["output"]["text"] == text + "!"
    assert (
        out["lanes"]["output"]["stats"].startswith("streaming") and "TTFT" in out["lanes"]["output"]["stats"]
    )


def test_missed_deltas_ask_for_a_snapshot(page: Any, comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(clock=clock)
    stream(view, clock, "output", 2000)
    out = replay(page, view.comm, init_at=5)  # the ESM loaded after 5 messages had gone by
    assert out["sent"] == [{"t": "resync", "lane": "output"}]
    view._handle_custom_msg(out["sent"][0], [])  # the kernel answers with a snapshot...
    clock.advance(1)
    view.push("output", "end")
    view.finish()
    out = replay(page, view.comm, init_at=5)
    assert out["lanes"]["output"]["text"] == view.text()


def test_guard_note_reaches_the_view(page: Any, comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(coalesce_ui=False, incremental_render=False, max_naive_updates=100, clock=clock)
    stream(view, clock, "output", 300)
    out = replay(page, view.comm)
    assert "per-token updates stopped after 100" in out["lanes"]["output"]["note"]
