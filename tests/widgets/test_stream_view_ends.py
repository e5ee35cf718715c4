"""How a StreamView ends a stream on a live front end: `end` + check, the front end's `ack`, and the fallbacks.

The front end is widget_fakes.FakeFrontend (stream_view.js's rules in Python); test_stream_view_js.py runs the
real stream_view.js for the same protocol.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from widget_fakes import FakeClock, FakeFrontend, RecordingComm

from workbench._types import Metrics, Request, StreamResult, TextDelta
from workbench.widgets import StreamView

GRACE = 0.05


def feed(view: StreamView, clock: FakeClock, lane: str | None, pieces: list[str], rate: float = 2000) -> str:
    for p in pieces:
        clock.advance(1 / rate)
        view.push(lane, TextDelta(p, clock()))
    return "".join(pieces)


def words(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i} " for i in range(n)]


def in_step(view: StreamView, fe: FakeFrontend) -> None:
    """Kernel traits and the front end's model state (what the notebook saves) hold the same values."""
    state = view.get_state()
    assert state["_texts"] == fe.attrs["_texts"]
    assert state["_lanes"] == fe.attrs["_lanes"]


async def test_no_ack_means_a_full_sync_after_the_grace(comms: list[RecordingComm], clock: FakeClock) -> None:
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view, ack=False)  # said hello, then the browser tab was closed
    fe.deliver(view)
    rec = view.comm
    view.start()
    text = feed(view, clock, None, words("w", 500))
    view.finish()
    assert rec.updates() == [] and view.get_state()["_texts"]["output"] == ""  # waiting for the ack
    await asyncio.sleep(3 * GRACE)
    assert view.fallback_syncs == 1 and len(rec.updates()) == 1
    final = rec.updates()[0]
    assert final["_texts"]["output"] == text and final["_lanes"][0]["status"] == "done"
    assert view.get_state()["_texts"]["output"] == text
    in_step(view, fe)


async def test_a_late_ack_after_the_fallback_changes_nothing(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start()
    text = feed(view, clock, None, words("w", 100))
    view.finish()
    await asyncio.sleep(3 * GRACE)  # the kernel was busy: the ack comes after the fallback sync
    n = len(view.comm.widget_msgs())
    fe.deliver(view)
    assert view.fallback_syncs == 1 and len(view.comm.widget_msgs()) == n
    assert view.get_state()["_texts"]["output"] == text
    in_step(view, fe)


async def test_failed_check_asks_for_a_snapshot_and_then_acks(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start()
    feed(view, clock, None, words("w", 300))
    fe.text["output"] = "X" + fe.text["output"][1:]  # same length, different text: only the CRC catches it
    view.finish()
    assert fe.resyncs() == 1 and fe.acks == 0
    fe.deliver(view)  # the resync: the kernel answers with a snapshot that carries the check
    snap = view.comm.custom()[-1]
    assert snap["t"] == "snap" and snap["text"] == view.text() and "h" in snap
    assert fe.acks == 1
    fe.deliver(view)  # the ack
    await asyncio.sleep(3 * GRACE)
    assert view.comm.updates() == [] and view.fallback_syncs == 0
    assert fe.attrs["_texts"]["output"] == view.text() == view.get_state()["_texts"]["output"]
    in_step(view, fe)


async def test_two_front_ends_one_ack_is_enough_and_a_late_one_catches_up(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    # Two browser tabs on one kernel: each has its own model; one of them attaches mid-stream.
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    first = FakeFrontend(view)
    first.deliver(view)
    view.start()
    feed(view, clock, None, words("a", 200))
    late = FakeFrontend(view)  # its initial state is the comm_open state: it missed the start
    feed(view, clock, None, words("b", 200))
    assert late.resyncs() == 1
    late.deliver(view)  # hello + resync -> a snapshot both models receive
    text = feed(view, clock, None, words("c", 200))
    text = view.text()
    view.finish()
    assert first.text["output"] == late.text["output"] == text
    assert first.acks == late.acks == 1
    first.deliver(view)
    late.deliver(view)  # the second ack finds nothing left to confirm
    await asyncio.sleep(3 * GRACE)
    assert view.comm.updates() == [] and view.fallback_syncs == 0
    in_step(view, first)
    in_step(view, late)


async def test_lanes_ending_and_restarting_before_their_acks_stay_in_step(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(lanes=["A", "B"], clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start("A")
    view.start("B")
    feed(view, clock, "A", words("a", 100))
    feed(view, clock, "B", words("b", 100))
    view.finish("A")
    a1 = view.text("A")
    view.start("A")  # a new stream on A before A's ack arrived
    feed(view, clock, "A", words("x", 50))
    view.fail("B", "ServerStreamError: boom")
    fe.deliver(view)  # acks for A (first stream) and B
    state = view.get_state()
    assert state["_texts"]["A"] == a1 and state["_texts"]["B"] == view.text("B")
    assert [m["status"] for m in state["_lanes"]] == ["done", "error"]
    in_step(view, fe)
    view.cancel("A")
    fe.deliver(view)
    assert view.get_state()["_texts"]["A"] == view.text("A") != a1
    await asyncio.sleep(3 * GRACE)
    assert view.comm.updates() == [] and view.fallback_syncs == 0
    in_step(view, fe)


async def test_a_full_sync_before_the_ack_settles_the_end(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(lanes=["A"], clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start("A")
    text = feed(view, clock, "A", words("a", 100))
    view.finish("A")
    view.set_lanes(["A", "B"])  # a full sync goes out before the ack comes back
    fe.deliver(view)
    await asyncio.sleep(3 * GRACE)
    assert view.fallback_syncs == 0 and len(view.comm.updates()) == 1
    assert view.get_state()["_texts"] == {"A": text, "B": ""}
    in_step(view, fe)


async def test_utf16_offsets_keep_emoji_streams_in_step(comms: list[RecordingComm], clock: FakeClock) -> None:
    # JS strings count UTF-16 code units: an emoji is 2, which code-point offsets would get wrong.
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start()
    text = feed(view, clock, None, [f"🙂{i}é\U0001f9ea " for i in range(400)])
    view.finish()
    assert fe.resyncs() == 0 and fe.text["output"] == text
    fe.deliver(view)
    assert view.get_state()["_texts"]["output"] == text == fe.attrs["_texts"]["output"]


async def test_a_result_text_that_replaces_the_streamed_one_reaches_the_front_end(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view)
    fe.deliver(view)
    req = Request.chat("sim-small", "hi")
    view.start(request=req)
    clock.advance(1)
    view.push(None, "partial tex")  # flushed: the front end has it
    m = Metrics(
        ttfb_ms=1.0,
        ttft_ms=2.0,
        e2e_ms=3.0,
        done_ms=3.0,
        itl_ms=(),
        tpot_ms=None,
        output_tokens=3,
        tokens_source="usage",
        tokens_per_s=None,
        connect_ms=None,
        connection_reused=None,
        bytes_received=0,
    )
    res = StreamResult(
        request=req,
        backend="sim",
        protocol="openai",
        text="a different answer",
        status="ok",
        metrics=m,
        sent_ns=0,
        first_byte_ns=None,
        end_ns=0,
        chunks=[],
        cache="exact",
    )
    view.finish(None, res)
    end = view.comm.custom()[-1]
    assert end["t"] == "end" and end["at"] == 0
    fe.deliver(view)
    assert fe.attrs["_texts"]["output"] == "a different answer" == view.get_state()["_texts"]["output"]


async def test_an_end_on_a_worker_thread_is_timed_on_the_kernel_loop(
    comms: list[RecordingComm], clock: FakeClock
) -> None:
    view = StreamView(clock=clock, ack_grace_s=GRACE)
    fe = FakeFrontend(view, ack=False)
    fe.deliver(view)  # arrives on this (the "kernel's") loop

    def worker() -> str:
        assert threading.current_thread() is not threading.main_thread()
        view.start()
        text = feed(view, clock, None, words("t", 300))
        view.finish()
        return text

    text = await asyncio.to_thread(worker)
    assert view.comm.updates() == []
    await asyncio.sleep(3 * GRACE)
    assert view.fallback_syncs == 1 and view.comm.updates()[-1]["_texts"]["output"] == text


def test_without_an_event_loop_the_end_syncs_at_once(comms: list[RecordingComm], clock: FakeClock) -> None:
    # Nothing could time an ack here, so the full sync goes at once (as with no front end at all).
    view = StreamView(clock=clock)
    fe = FakeFrontend(view)
    fe.deliver(view)
    view.start()
    text = feed(view, clock, None, words("t", 100))
    view.finish()
    assert [u["_texts"]["output"] for u in view.comm.updates()] == [text]
    assert fe.attrs["_texts"]["output"] == text


def test_ack_grace_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        StreamView(ack_grace_s=-1)
