"""The Recorder on reasoning, tool-call and n > 1 streams: which chunks count, what the result keeps, frames."""

from __future__ import annotations

import polars as pl
import pytest

from workbench import (
    ChoiceDelta,
    ChunkRecord,
    DoneEvent,
    ReasoningDelta,
    Request,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from workbench.metrics import Recorder, chunks_frame, compute_metrics, to_frame, tokens_note
from workbench.metrics.recorder import ToolCallAssembler

MS = 1_000_000


def _events() -> list[StreamEvent]:
    return [
        ReasoningDelta("let me ", 10 * MS),
        ReasoningDelta("think", 12 * MS),
        ChoiceDelta(1, "other ", 13 * MS),
        TextDelta("Hel", 20 * MS),
        ReasoningDelta("r1", 21 * MS, choice=1),
        TextDelta("lo", 25 * MS),
        ToolCallDelta(0, "call_a", "f", '{"x"', 30 * MS),
        ToolCallDelta(0, "call_a", "f", ":1}", 31 * MS),  # id and name repeated (llama-cpp-python): set once
        ToolCallDelta(1, None, "g", "{}", 31 * MS),
        ToolCallDelta(0, "c9", "h", "{}", 32 * MS, choice=1),
        UsageEvent(Usage(5, 11), 33 * MS),
        DoneEvent("tool_calls", {"id": "x"}, 34 * MS, {0: "tool_calls", 1: "stop"}),
    ]


def _finish(feed: str) -> Recorder:
    rec = Recorder(Request.chat("m", "hi"), backend="b", protocol="openai")
    rec.sent(0)
    events = _events()
    if feed == "event":
        for ev in events:
            rec.event(ev)
    elif feed == "one read":
        rec.events(events)
    else:  # text first in one read (the lean path), then the rest
        rec.events([TextDelta("", 1), *events[:3]])
        rec.events(events[3:])
    return rec


@pytest.mark.parametrize("feed", ["event", "one read", "two reads"])
def test_reasoning_and_tool_calls_count_as_token_chunks(feed: str) -> None:
    r = _finish(feed).finish(end_ns=40 * MS)
    assert r.text == "Hello" and r.reasoning == "let me think" and r.finish_reason == "tool_calls"
    assert [c.kind for c in r.chunks] == ["reasoning", "reasoning", "text", "text", "tool_call", "tool_call",
                                          "tool_call"]
    assert [c.text for c in r.chunks] == ["", "", "Hel", "lo", "", "", ""]
    assert all(c.is_output for c in r.chunks)
    assert r.tool_calls == [ToolCall(0, "call_a", "f", '{"x":1}'), ToolCall(1, None, "g", "{}")]
    m = r.metrics
    assert m.ttft_ms == 10.0 and m.first_text_ms == 20.0 and m.e2e_ms == 31.0
    assert m.itl_ms == (2.0, 8.0, 5.0, 5.0, 1.0, 0.0)
    assert m.output_tokens == 11 and m.tokens_source == "usage"
    assert [(c.index, c.text, c.reasoning, c.finish_reason) for c in r.choices] == [
        (0, "Hello", "let me think", "tool_calls"),
        (1, "other ", "r1", "stop"),
    ]
    assert r.choices[1].tool_calls == (ToolCall(0, "c9", "h", "{}"),)
    # the public recomputation agrees with the recorder
    again = compute_metrics(sent_ns=0, first_byte_ns=None, end_ns=40 * MS, chunks=r.chunks, usage=r.usage,
                            connect_ms=None, connection_reused=None, bytes_received=0)
    assert again == m


def test_a_text_only_stream_keeps_no_kinds_and_no_choices() -> None:
    rec = Recorder(Request.chat("m", "hi"), backend="b", protocol="ollama")
    rec.sent(0)
    rec.events([TextDelta("a", 5 * MS), TextDelta("b", 7 * MS), DoneEvent("stop")])
    r = rec.finish(end_ns=8 * MS)
    assert r.chunks == [ChunkRecord(5 * MS, "a"), ChunkRecord(7 * MS, "b")]
    assert r.metrics.first_text_ms == r.metrics.ttft_ms == 5.0
    assert r.metrics.tokens_source == "chunks" and r.metrics.output_tokens == 2
    assert r.choices == [] and r.tool_calls == [] and r.reasoning == ""


def test_tool_call_assembler_joins_fragments_by_index() -> None:
    a = ToolCallAssembler()
    assert not a and a.calls() == []
    for piece in (ToolCallDelta(1, "id1", "g", ""), ToolCallDelta(0, "", None, '{"a"'),
                  ToolCallDelta(1, None, None, "{}"), ToolCallDelta(0, "id0", "f", ": 2}")):
        a.add(piece)
    assert a.calls() == [ToolCall(0, "id0", "f", '{"a": 2}'), ToolCall(1, "id1", "g", "{}")]


def test_frames_carry_kind_reasoning_tool_calls_and_choices() -> None:
    r = _finish("event").finish(end_ns=40 * MS)
    row = to_frame([r]).row(0, named=True)
    assert row["first_text_ms"] == 20.0 and row["ttft_ms"] == 10.0
    assert row["reasoning_chars"] == len("let me think") and row["n_tool_calls"] == 2 and row["n_choices"] == 2
    assert row["text_chars"] == 5 and row["n_chunks"] == 7
    f = chunks_frame([r])
    assert f["kind"].to_list() == ["reasoning", "reasoning", "text", "text", "tool_call", "tool_call", "tool_call"]
    assert f["itl_ms"].drop_nulls().to_list() == pytest.approx(list(r.metrics.itl_ms))


def test_tokens_note_says_when_tokens_were_counted_by_chunks() -> None:
    def result(usage: bool) -> object:
        rec = Recorder(Request.chat("m", "hi"), backend="b", protocol="openai")
        rec.sent(0)
        rec.event(TextDelta("a", MS))
        if usage:
            rec.event(UsageEvent(Usage(1, 1)))
        return rec.finish(end_ns=2 * MS)

    assert tokens_note(to_frame([result(True), result(True)])) is None  # type: ignore[list-item]
    note = tokens_note(to_frame([result(True), result(False)]))  # type: ignore[list-item]
    assert note is not None and "1 of 2 requests" in note and "no usage" in note
    assert tokens_note(pl.DataFrame()) is None
