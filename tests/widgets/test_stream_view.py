"""StreamView message discipline, checked on a recording comm with a hand-driven clock."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from widget_fakes import FakeClock, FakeFrontend, RecordingComm, u16

from workbench._exceptions import IdleTimeout
from workbench._types import DoneEvent, Metrics, Request, StreamResult, TextDelta, Usage, UsageEvent
from workbench.optimizations import Optimizations
from workbench.widgets import StreamView

TOK = "tok₁ "  # non-ASCII on purpose: sizes are UTF-8 bytes


def feed(view: StreamView, clock: FakeClock, n: int, rate: float, lane: str | None = None) -> str:
    """Push n tokens at `rate` tokens/s of fake time; returns the text pushed."""
    pieces = []
    for i in range(n):
        clock.advance(1 / rate)
        piece = f"{TOK}{i} "
        pieces.append(piece)
        view.push(lane, TextDelta(piece, clock()))
    return "".join(pieces)


def frontend_text(rec: RecordingComm, lane: str) -> str:
    """Rebuild a lane's live text the way stream_view.js does: start resets, deltas must line up."""
    text = ""
    for c in rec.custom():
        if c["t"] == "start" and c["lane"] == lane:
            text = ""
        elif c["t"] == "d" and lane in c["lanes"]:
            d = c["lanes"][lane]
            assert d["at"] == u16(text), "a delta skipped or repeated text"
            text += d["s"]
    return text


def synced(rec: RecordingComm) -> dict[str, Any]:
    """The widget state the front end (and a saved notebook) ends up with."""
    state: dict[str, Any] = {}
    for up in rec.updates():
        state.update(up)
    return state


def make_result(req: Request, text: str, status: str = "ok", cache: str = "off") -> StreamResult:
    m = Metrics(
        ttfb_ms=5.0,
        ttft_ms=12.5,
        e2e_ms=400.0,
        done_ms=401.0,
        itl_ms=(),
        tpot_ms=1.0,
        output_tokens=42,
        tokens_source="usage",
        tokens_per_s=105.0,
        connect_ms=1.0,
        connection_reused=False,
        bytes_received=10,
    )
    return StreamResult(
        request=req,
        backend="sim",
        protocol="openai",
        text=text,
        status=status,  # type: ignore[arg-type]
        metrics=m,
        sent_ns=0,
        first_byte_ns=None,
        end_ns=0,
        chunks=[],
        cache=cache,
    )  # type: ignore[arg-type]


OVERHEAD = 200  # bytes per message: envelope + live figures (the end message's full figures fit in it too)


@pytest.mark.parametrize("rate", [1_000, 5_000, 20_000])
async def test_live_view_gets_the_text_once_and_the_exact_final_value(
    comms: list[RecordingComm], clock: FakeClock, rate: int
) -> None:
    view = StreamView(clock=clock, rate_hz=30, ack_grace_s=0.05)
    fe = FakeFrontend(view)
    fe.deliver(view)  # hello: a live front end exists
    rec = view.comm
    rec.clear()
    t0 = clock()
    view.start()
    text = feed(view, clock, 10_000, rate)
    view.finish()
    duration = (clock() - t0) / 1e9

    msgs = rec.widget_msgs()
    assert len(msgs) <= math.ceil(duration * 30) + 2, (len(msgs), duration)
    # Deltas and the end are custom messages; no state update crosses the wire at all.
    assert rec.updates() == [] and [c["t"] for c in rec.custom()][-1] == "end"
    assert fe.text["output"] == text  # the tail rode in the end message
    fe.deliver(view)  # the front end's ack
    assert fe.acks == 1 and fe.attrs["_texts"]["output"] == text  # what the saved notebook holds
    state = view.get_state()
    assert state["_texts"]["output"] == text and state["_lanes"] == fe.attrs["_lanes"]
    assert state["_lanes"][0]["status"] == "done"
    await asyncio.sleep(0.15)  # past the grace: the ack settled the end, no fallback sync follows
    assert len(rec.widget_msgs()) == len(msgs) and view.fallback_syncs == 0

    text_bytes = len(text.encode())
    assert rec.bytes() <= 1.2 * text_bytes + OVERHEAD * len(msgs), rec.bytes() / text_bytes


@pytest.mark.parametrize("rate", [1_000, 20_000])
def test_headless_end_is_one_full_sync_of_the_exact_text(
    comms: list[RecordingComm], clock: FakeClock, rate: int
) -> None:
    # No front end ever spoke (nbclient, a script): only a kernel message can carry the final text.
    view = StreamView(clock=clock, rate_hz=30)
    rec = view.comm
    rec.clear()
    t0 = clock()
    view.start()
    text = feed(view, clock, 10_000, rate)
    view.finish()
    duration = (clock() - t0) / 1e9

    msgs = rec.widget_msgs()
    assert len(msgs) <= math.ceil(duration * 30) + 2, (len(msgs), duration)
    assert len(rec.updates()) == 1
    assert all(d["data"]["method"] == "custom" for _, d, _ in msgs[:-1])
    final = rec.updates()[-1]
    assert final["_texts"]["output"] == text and view.get_state()["_texts"]["output"] == text
    assert final["_lanes"][0]["status"] == "done"
    live = frontend_text(rec, "output")
    assert text.startswith(live) and len(live) > 0.9 * len(text)  # the tail rides in the final sync

    text_bytes = len(text.encode())
    streaming_bytes = sum(n for _, d, n in msgs[:-1])
    assert streaming_bytes <= 1.2 * text_bytes + OVERHEAD * len(msgs)
    assert msgs[-1][2] <= text_bytes + 2 * OVERHEAD  # the final sync carries the text once


def test_naive_resends_whole_text_per_token_without_guard(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(coalesce_ui=False, incremental_render=False, max_naive_updates=None, clock=clock)
    rec = view.comm
    rec.clear()
    view.start()
    text = feed(view, clock, 500, 5_000)
    view.finish()
    ups = rec.updates()
    assert len(ups) == 500 + 2  # start, one per token, final
    assert rec.custom() == []
    assert synced(rec)["_texts"]["output"] == text
    # O(n^2): every update carries the whole text so far.
    assert rec.bytes() > 500 * len(text.encode()) / 2


def test_naive_guard_switches_to_coalesced_and_says_why(comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(optimizations=Optimizations.baseline(), max_naive_updates=1000, clock=clock)
    assert not view.coalesce_ui and not view.incremental_render
    rec = view.comm
    rec.clear()
    view.start()
    t_guard = None
    for i in range(5_000):
        clock.advance(1 / 5_000)
        view.push(None, TextDelta(f"t{i} ", clock()))
        if t_guard is None and view.figures()["note"]:
            t_guard = clock()
    text = view.text()
    view.finish()
    assert t_guard is not None
    note = view.figures()["note"]
    assert "per-token updates stopped after 1,000" in note and "coalesce_ui is off" in note
    after = (clock() - t_guard) / 1e9
    # 1,000 per-token updates + the start, then at most one per 1/30 s, then the final sync.
    assert len(rec.updates()) <= 1 + 1000 + math.ceil(after * 30) + 2
    assert synced(rec)["_texts"]["output"] == text
    assert "stopped after" in rec.updates()[-1]["_lanes"][0]["note"]


def test_uncoalesced_incremental_sends_one_delta_per_token(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(coalesce_ui=False, incremental_render=True, clock=clock)
    rec = view.comm
    rec.clear()
    view.start()
    text = feed(view, clock, 300, 5_000)
    view.finish()
    assert len([c for c in rec.custom() if c["t"] == "d"]) == 300
    assert frontend_text(rec, "output") == text


@pytest.mark.parametrize("live", [False, True], ids=["headless", "live"])
@pytest.mark.parametrize("end", ["fail", "cancel", "finish"])
async def test_trailing_text_is_flushed_on_every_end(
    comms: list[RecordingComm], clock: FakeClock, end: str, live: bool
) -> None:
    view = StreamView(clock=clock)
    rec = view.comm
    fe = FakeFrontend(view)
    if live:
        fe.deliver(view)
    view.start(request=Request.chat("sim-small", "hi"))
    clock.advance(0.1)
    view.push(None, TextDelta("first ", clock()))  # flushed at once (interval passed)
    view.push(None, TextDelta("buffered ", clock()))  # same instant: held back by the rate limit
    view.push(None, TextDelta("tail", clock()))
    assert frontend_text(rec, "output") == "first "
    if end == "fail":
        view.fail(None, IdleTimeout("no chunk for 60 s"))
    elif end == "cancel":
        view.cancel()
    else:
        view.finish()
    if live:
        assert rec.updates() == [] and rec.custom()[-1]["t"] == "end"
        fe.deliver(view)  # the ack
    assert fe.attrs["_texts"]["output"] == "first buffered tail"  # what the notebook saves
    final = view.get_state()
    assert final["_texts"]["output"] == "first buffered tail"
    assert final["_lanes"] == fe.attrs["_lanes"]
    lane = final["_lanes"][0]
    assert lane["status"] == {"fail": "error", "cancel": "cancelled", "finish": "done"}[end]
    if end == "fail":
        assert lane["error"].startswith("IdleTimeout: no chunk for 60 s")


async def test_timer_flushes_the_tail_when_no_push_comes(comms: list[RecordingComm]) -> None:
    view = StreamView(rate_hz=20)
    rec = view.comm
    view.start()
    view.push(None, "held back")  # within 50 ms of the start message: buffered, timer armed
    assert frontend_text(rec, "output") == ""
    await asyncio.sleep(0.2)
    assert frontend_text(rec, "output") == "held back"
    assert view.figures()["status"] == "streaming"


def test_two_lanes_share_one_message_per_flush(comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(lanes=["baseline", "optimized"], clock=clock)
    rec = view.comm
    view.start("baseline")
    view.start("optimized")
    rec.clear()
    for i in range(200):
        clock.advance(0.001)
        view.push("baseline", f"a{i} ")
        view.push("optimized", f"b{i} ")
    deltas = [c for c in rec.custom() if c["t"] == "d"]
    assert len(deltas) <= math.ceil(0.2 * 30) + 1
    assert any(set(c["lanes"]) == {"baseline", "optimized"} for c in deltas)
    view.finish("baseline")
    view.fail("optimized", "server went away")
    final = rec.updates()[-1]
    assert final["_texts"]["baseline"] == "".join(f"a{i} " for i in range(200))
    assert final["_texts"]["optimized"] == "".join(f"b{i} " for i in range(200))
    assert [ln["status"] for ln in final["_lanes"]] == ["done", "error"]


def test_finish_with_result_shows_its_figures_and_exact_text(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock)
    req = Request.chat("sim-small", "hi")
    view.start(request=req)
    view.push(None, TextDelta("Hel", clock()))
    view.push(None, UsageEvent(Usage(3, 42)))
    view.push(None, DoneEvent("stop"))
    view.finish(None, make_result(req, "Hello there", cache="exact"))
    f = view.figures()
    assert (f["status"], f["ttft_ms"], f["tokens_per_s"], f["tokens"], f["cache"]) == (
        "done",
        12.5,
        105.0,
        42,
        "exact",
    )
    assert view.comm.updates()[-1]["_texts"]["output"] == "Hello there"
    static = view.static()
    assert (
        "Hello there" in static.markdown
        and "TTFT 12 ms" in static.markdown
        and "cache exact" in static.markdown
    )
    assert "Hello there" in static._repr_html_()


def test_resync_request_answers_with_a_snapshot(comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(clock=clock)
    rec = view.comm
    view.start()
    feed(view, clock, 50, 100)
    view._handle_custom_msg({"t": "resync", "lane": "output"}, [])
    snap = rec.custom()[-1]
    assert snap["t"] == "snap" and snap["text"] == view.text()
    clock.advance(1)
    view.push(None, "more")
    assert rec.custom()[-1]["lanes"]["output"]["at"] == len(snap["text"])


def test_consume_sync_and_async(comms: list[RecordingComm]) -> None:
    view = StreamView(lanes=["a", "b"])
    req = Request.chat("sim-small", "hi")

    class SyncStream:
        request = req
        result = make_result(req, "x y z")

        def __iter__(self) -> Iterator[TextDelta]:
            yield from (TextDelta("x "), TextDelta("y "), TextDelta("z"))

    assert view.consume(SyncStream(), "a") is SyncStream.result
    assert view.text("a") == "x y z" and view.figures("a")["status"] == "done"

    class AsyncStream:
        request = req
        result = None

        async def __aiter__(self) -> AsyncIterator[TextDelta]:
            yield TextDelta("p")
            raise IdleTimeout("stalled")

    with pytest.raises(IdleTimeout):
        asyncio.run(view.aconsume(AsyncStream(), "b"))
    assert view.figures("b")["status"] == "error" and view.text("b") == "p"


async def test_aconsume_task_cancel_marks_lane_cancelled_and_cancels_stream(
    comms: list[RecordingComm],
) -> None:
    view = StreamView()
    cancelled: list[bool] = []

    class Slow:
        result = None

        def cancel(self) -> None:
            cancelled.append(True)

        async def __aiter__(self) -> AsyncIterator[TextDelta]:
            while True:
                await asyncio.sleep(0.001)
                yield TextDelta("t ")

    task = asyncio.create_task(view.aconsume(Slow()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert view.figures()["status"] == "cancelled" and cancelled == [True]
    assert view.comm.updates()[-1]["_texts"]["output"] == view.text()


def test_no_secret_or_text_leaks_into_unrelated_state(comms: list[RecordingComm]) -> None:
    view = StreamView()
    state: dict[str, Any] = view.get_state()
    assert set(state) >= {"_lanes", "_texts", "_uid", "_esm"}
    with pytest.raises(ValueError):
        StreamView(lanes=["a", "a"])
    with pytest.raises(ValueError):
        StreamView(rate_hz=0)


def test_naive_guard_also_counts_across_lanes_within_the_server_rate_window(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(
        lanes=["A", "B"], coalesce_ui=False, incremental_render=False, max_naive_updates=1000, clock=clock
    )
    view.start("A")
    view.start("B")
    for i in range(700):  # 1,400 per-token updates in 0.28 s: each lane is under 1,000, together they are not
        clock.advance(0.0002)
        view.push("A", f"a{i} ")
        view.push("B", f"b{i} ")
    assert "stopped after 1,000" in view.figures("A")["note"]
    assert "stopped after 1,000" in view.figures("B")["note"]
    # 1,000 per-token messages in the window, then coalesced: never past the server's limit.
    assert len(view.comm.updates()) <= 2 + 1000 + math.ceil(0.14 * 30) + 2
    clock.advance(4)  # outside the window: a new stream gets its per-token updates back
    view.start("A")
    view.push("A", "x")
    assert view.figures("A")["note"] == ""


async def test_stop_before_the_first_event_cancels_the_stream_and_keeps_the_lane(
    comms: list[RecordingComm],
) -> None:
    view = StreamView()
    req = Request.chat("sim-small", "hi")
    cancelled: list[bool] = []

    class Late:
        request = req
        result = None

        def cancel(self) -> None:
            cancelled.append(True)

        async def __aiter__(self) -> AsyncIterator[TextDelta]:
            if not cancelled:
                yield TextDelta("should not show")

    view.start(request=req)
    view.cancel()  # Stop pressed while the request was still connecting
    await view.aconsume(Late())
    assert cancelled == [True] and view.figures()["status"] == "cancelled" and view.text() == ""


def test_live_ttft_off_waits_for_the_measured_figure(comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(clock=clock)
    req = Request.chat("sim-small", "hi")
    view.start(request=req, live_ttft=False)  # started from the first event: the send stamp is unknown
    clock.advance(0.5)
    view.push(None, TextDelta("a", clock()))
    assert view.figures()["ttft_ms"] is None
    view.finish(None, make_result(req, "a"))
    assert view.figures()["ttft_ms"] == 12.5
