"""stream_view.js in a real Chromium page (fake anywidget model, real DOM): what a browser view ends up showing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


HELLO = {"t": "hello"}


def replay(
    page: Any,
    rec: RecordingComm,
    *,
    init_at: int = 0,
    render_at: int = 0,
    tamper: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    opened = next(d for kind, d, _ in rec.log if kind == "comm_open")["data"]["state"]
    msgs = [copy.deepcopy(d["data"]) for _, d, _ in rec.widget_msgs()]
    if tamper is not None:
        tamper(msgs)
    payload = {"esm": ESM, "state": opened, "messages": msgs, "init_at": init_at, "render_at": render_at}
    out: dict[str, Any] = page.evaluate(DRIVER, payload)
    return out


def stream(view: StreamView, clock: FakeClock, lane: str, n: int, fmt: str = "{lane}{i} ") -> str:
    view.start(lane)
    parts = []
    for i in range(n):
        clock.advance(1 / 5000)
        parts.append(fmt.format(lane=lane, i=i))
        view.push(lane, TextDelta(parts[-1], clock()))
    return "".join(parts)


def live_session(view: StreamView, body: Callable[[], None]) -> None:
    """Run `body` on a running event loop after a front end's hello, so ends go out as `end` + wait for an ack."""

    async def go() -> None:
        view._handle_custom_msg(HELLO, [])
        body()

    # On a thread of its own: playwright's sync API keeps an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result(30)


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
    # Headless ends were full syncs: nothing to check or ack, the model state already holds the texts.
    assert out["sent"] == [HELLO] and out["attrs"]["_texts"] == {"A": a, "B": b}


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
    assert out["sent"] == [HELLO, {"t": "resync", "lane": "output"}]
    view._handle_custom_msg(out["sent"][1], [])  # the kernel answers with a snapshot...
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


def _garble_first_delta(lane: str) -> Callable[[list[dict[str, Any]]], None]:
    def tamper(msgs: list[dict[str, Any]]) -> None:
        for m in msgs:
            d = m.get("content", {}).get("lanes", {}).get(lane)
            if d is not None and d["s"]:
                d["s"] = chr(ord(d["s"][0]) + 1) + d["s"][1:]  # same UTF-16 length: only the CRC-32 can tell
                return

    return tamper


@pytest.mark.parametrize("garbled", [False, True], ids=["clean", "garbled"])
def test_live_end_is_checked_stored_in_the_model_and_acked(
    page: Any, comms: list[RecordingComm], clock: FakeClock, garbled: bool
) -> None:
    view = StreamView(lanes=["A", "B"], clock=clock)
    texts: dict[str, str] = {}

    def body() -> None:
        texts["A"] = stream(view, clock, "A", 1500, fmt="🙂{i}é ")  # UTF-16 offsets and CRC over surrogates
        texts["B"] = stream(view, clock, "B", 700)
        view.finish("A")
        view.fail("B", "ServerStreamError: boom")

    live_session(view, body)
    rec = view.comm
    assert rec.updates() == []  # both ends were small custom messages
    tamper = _garble_first_delta("A") if garbled else None
    out = replay(page, rec, tamper=tamper)
    acks = [m for m in out["sent"] if m["t"] == "ack"]
    if garbled:
        # The check failed for A: the view asked for a snapshot instead of storing a wrong text.
        assert {"t": "resync", "lane": "A"} in out["sent"] and [m["lane"] for m in acks] == ["B"]
        view._handle_custom_msg({"t": "resync", "lane": "A"}, [])
        out = replay(page, rec, tamper=tamper)  # the same session again, now with the snapshot at its end
        acks = [m for m in out["sent"] if m["t"] == "ack"]
    assert sorted(m["lane"] for m in acks) == ["A", "B"]
    assert out["lanes"]["A"]["text"] == texts["A"] and out["lanes"]["B"]["text"] == texts["B"]
    assert out["lanes"]["B"]["error"] == "ServerStreamError: boom"
    # The model state JupyterLab saves holds the exact texts, set in the browser without save_changes().
    assert out["attrs"]["_texts"] == texts and out["saved"] == 0
    n = len(rec.widget_msgs())
    for m in acks:
        view._handle_custom_msg(m, [])
    state = view.get_state()
    assert state["_texts"] == texts and state["_lanes"] == out["attrs"]["_lanes"]
    assert len(rec.widget_msgs()) == n and view.fallback_syncs == 0  # recorded without an echo
