"""The sans-I/O view model and the headless cost of `coalesce_ui` / `incremental_render`."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest

from workbench import Backend, Request
from workbench._types import TextDelta
from workbench.client import Client
from workbench.simulator import Profile, Simulator
from workbench.view import UI_COLUMNS, ViewModel, message_bytes, view_columns, view_cost

MS = 1_000_000


def stamped(n: int, tok_per_s: float, t0: int = 10**12) -> list[TextDelta]:
    step = int(1e9 / tok_per_s)
    return [TextDelta(f"w{i % 89} ", t0 + (i + 1) * step) for i in range(n)]


def test_the_view_package_imports_no_widget_library() -> None:
    # The core (runner, bench) imports workbench.view: it must not drag in ipywidgets / anywidget.
    code = (
        "import sys, workbench.view; bad = [m for m in ('ipywidgets', 'anywidget', 'IPython') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_coalescing_sends_at_most_rate_hz_and_the_tail_when_the_window_closes() -> None:
    vm = ViewModel(rate_hz=10.0)  # a 100 ms window
    assert vm.start("output", 0)[0]["content"]["t"] == "start"
    # Within the window of the start: buffered, nothing leaves.
    assert vm.on_event("output", TextDelta("a", 10 * MS), 10 * MS) == []
    assert vm.on_event("output", TextDelta("b", 50 * MS), 50 * MS) == []
    assert vm.due_ns() == 100 * MS
    assert vm.poll(99 * MS) == []
    [tail] = vm.poll(100 * MS)  # the window closed: both pieces in one delta
    assert tail["content"]["lanes"]["output"]["s"] == "ab" and tail["content"]["lanes"]["output"]["at"] == 0
    assert vm.due_ns() is None
    # The next piece after the window leaves at once.
    [d] = vm.on_event("output", TextDelta("c", 250 * MS), 250 * MS)
    assert d["content"]["lanes"]["output"] == {
        "seq": 1,
        "at": 2,
        "s": "c",
        "m": d["content"]["lanes"]["output"]["m"],
    }


def test_live_end_is_a_small_checked_custom_message_and_a_headless_end_a_full_sync() -> None:
    for live in (True, False):
        vm = ViewModel(coalesce=False)
        vm.start("output", 0)
        for i, piece in enumerate(["héllo ", "wörld 🙂"]):
            vm.on_event("output", TextDelta(piece, i + 1), i + 1)
        vm.lane("output").status = "done"
        [end] = vm.end("output", live=live)
        text = "héllo wörld 🙂"
        if live:
            data = text.encode("utf-16-le")
            c = end["content"]
            assert c["t"] == "end" and c["s"] == "" and c["n"] == len(data) // 2
            assert c["h"] == zlib.crc32(data) and vm.pending_texts == {"output": text}
            vm.acked("output", text, c["meta"])
            assert vm.texts["output"] == text and not vm.pending_texts
            assert vm.metas == [c["meta"]]
        else:
            assert end["method"] == "update" and end["state"]["_texts"]["output"] == text


def test_state_mode_resends_the_whole_text_on_every_flush() -> None:
    vm = ViewModel(coalesce=False, incremental=False)
    vm.start("output", 0)
    sizes = [
        len(vm.on_event("output", TextDelta("x" * 100, i + 1), i + 1)[0]["state"]["_texts"]["output"])
        for i in range(5)
    ]
    assert sizes == [100, 200, 300, 400, 500]


def test_the_naive_guard_switches_a_lane_to_coalescing() -> None:
    vm = ViewModel(coalesce=False, max_naive_updates=50, rate_hz=10.0)
    vm.start("output", 0)
    sent = sum(len(vm.on_event("output", ev, ev.t_ns)) for ev in stamped(500, 5_000, t0=0))
    assert 50 <= sent <= 52 and vm.lane("output").forced_coalesce
    assert "coalesce_ui is off" in vm.lane("output").note


@pytest.mark.parametrize("tok_per_s", [2_000, 10_000])
def test_coalesce_cuts_messages_and_incremental_cuts_bytes_at_thousands_of_tokens_per_s(
    tok_per_s: int,
) -> None:
    events = stamped(4_000, tok_per_s)
    cost = {
        (c, i): view_cost(events, coalesce=c, incremental=i, max_naive_updates=None)
        for c in (True, False)
        for i in (True, False)
    }
    per_chunk = cost[False, True]
    coalesced = cost[True, True]
    # Per chunk: start + one message per chunk + end. Coalesced: about one per 1/30 s of stream.
    assert per_chunk["ui_messages"] == len(events) + 2
    seconds = len(events) / tok_per_s
    assert coalesced["ui_messages"] <= 30 * seconds + 4
    assert per_chunk["ui_messages"] / coalesced["ui_messages"] > 20
    # Incremental vs full state, same coalescing: the state mode re-sends the text on every flush.
    for c in (True, False):
        assert cost[c, False]["ui_bytes"] > 5 * cost[c, True]["ui_bytes"], c
    # The CPU the kernel spends follows: per-chunk full state costs far more than coalesced deltas.
    assert cost[False, False]["ui_cpu_ms"] > cost[True, True]["ui_cpu_ms"]


def test_view_cost_counts_the_json_bytes_of_every_message() -> None:
    events = stamped(50, 1_000)
    vm = ViewModel(coalesce=False)
    msgs = vm.start("output", events[0].t_ns)
    for ev in events:
        msgs += vm.on_event("output", ev, ev.t_ns)
    vm.lane("output").status = "done"
    msgs += vm.end("output", live=True)
    got = view_cost(events, coalesce=False, incremental=True, start_ns=events[0].t_ns)
    assert got["ui_messages"] == len(msgs)
    assert got["ui_bytes"] == sum(message_bytes(m) for m in msgs)


def test_view_columns_of_a_real_stream_from_the_simulator() -> None:
    profile = Profile(ttft_ms=5.0, token_delay_ms=0.2, jitter=0.0, load_ms=0.0)
    with Simulator(profile) as sim, Client(Backend(sim.url, protocol="openai")) as client:
        with client.stream(Request.chat("sim-small", "go", max_tokens=1500)) as stream:
            for _ in stream:
                pass
        result = stream.result
    assert result is not None and result.ok and len(result.chunks) >= 1000
    on = view_columns(result, coalesce=True, incremental=True)
    off = view_columns(result, coalesce=False, incremental=False)
    assert set(on) == set(UI_COLUMNS) == set(off)
    assert off["ui_messages"] > 5 * on["ui_messages"]
    assert off["ui_bytes"] > 20 * on["ui_bytes"]
    assert on["ui_bytes"] > len(result.text.encode())  # the text crosses at least once
    assert on["ui_cpu_ms"] > 0
