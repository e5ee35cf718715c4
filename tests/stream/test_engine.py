"""The stream engine driven with no I/O at all: real wire bodies (the simulator's encoders) with every fault
of the fault matrix, fed whole, split at every byte, and cancelled at every step.

A tiny driver below plays the role of `workbench.stream.drive`: feed, hand out, check, end. Time is an
argument, so deadlines are tested by naming the moment, not by waiting for it.
"""

from __future__ import annotations

import pytest

from workbench._exceptions import (
    CancelledError,
    FirstTokenTimeout,
    IdleTimeout,
    MalformedStreamError,
    ServerStreamError,
    TotalTimeout,
    TruncatedStreamError,
    WorkbenchError,
)
from workbench._types import DoneEvent, ProtocolName, Request, TextDelta, Timeouts
from workbench.simulator.wire import Timing
from workbench.simulator.wire_ollama import OllamaEncoder
from workbench.simulator.wire_openai import OpenAIEncoder
from workbench.stream import StreamEngine

MS = 1_000_000
PIECES = ["Hel", "lo", ", wo", "rld", " ✓"]
TEXT = "".join(PIECES)
TIMING = Timing(5 * MS, 0, MS, 4 * MS, 3, len(PIECES), "stop")
PROTOCOLS: list[ProtocolName] = ["ollama", "openai"]
MODES = [False, True]  # fast_parse off / on


def encoder(protocol: ProtocolName) -> OllamaEncoder | OpenAIEncoder:
    return (
        OllamaEncoder("chat", "m") if protocol == "ollama" else OpenAIEncoder("chat", "m", include_usage=True)
    )


def body(protocol: ProtocolName, fault: str | None = None, at: int = 2) -> bytes:
    """The wire bytes of one response with `fault` before content chunk `at` (as the simulator plans them)."""
    enc = encoder(protocol)
    out = list(enc.preamble())
    for i, p in enumerate(PIECES):
        if i == at and fault == "truncate":
            return b"".join(out)  # the end marker never comes
        if i == at and fault == "disconnect":
            nxt = enc.batch([p], None)
            return b"".join(out) + nxt[: len(nxt) // 2]  # cut in the middle of a chunk
        if i == at and fault == "error":
            return b"".join([*out, enc.error_chunk("simulated failure")])
        if i == at and fault == "malformed":
            out.append(enc.malformed())
        out.append(enc.batch([p], "stop" if i == len(PIECES) - 1 else None))
    out.extend(enc.tail(TIMING))
    return b"".join(out)


def first_chunk_end(protocol: ProtocolName, wire: bytes) -> int:
    """Where the first content chunk's line (NDJSON) or event (SSE) ends."""
    sep = b"\n" if protocol == "ollama" else b"\n\n"
    return wire.index(sep, wire.index(b"Hel")) + len(sep)


OUTCOMES: dict[str | None, type[WorkbenchError] | None] = {
    None: None,
    "truncate": TruncatedStreamError,
    "disconnect": TruncatedStreamError,
    "error": ServerStreamError,
    "malformed": MalformedStreamError,
}


def engine(
    protocol: ProtocolName, fast: bool, *, early_cancel: bool = False, t: Timeouts | None = None
) -> StreamEngine:
    e = StreamEngine(
        Request.chat("m", "hi"),
        backend="test",
        url="http://test",
        protocol=protocol,
        timeouts=t or Timeouts(None, None, None, None),
        early_cancel=early_cancel,
        fast_parse=fast,
    )
    e.sent(1_000 * MS)
    return e


def drive(
    e: StreamEngine, reads: list[bytes], *, cancel_after: int | None = None
) -> tuple[str, WorkbenchError | None]:
    """Feed reads one by one, as a driver does; (text handed out, the error that ended the stream)."""
    text: list[str] = []
    t = 1_000 * MS
    try:
        for i, data in enumerate(reads):
            if cancel_after is not None and i == cancel_after:
                e.cancel()
            err = e.check(t)
            if err is not None:
                raise err
            t += MS
            text += [ev.text for ev in e.on_data(data, t) if isinstance(ev, TextDelta)]
        if cancel_after is not None and cancel_after >= len(reads):
            e.cancel()
        text += [ev.text for ev in e.on_eof(t) if isinstance(ev, TextDelta)]
        err = e.end(t)
        if err is not None:
            raise err
    except WorkbenchError as exc:
        return "".join(text), e.fail(exc, t)
    return "".join(text), None


@pytest.mark.parametrize("fast", MODES, ids=["baseline", "fast"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", list(OUTCOMES), ids=[str(f) for f in OUTCOMES])
def test_every_fault_split_at_every_byte(protocol: ProtocolName, fast: bool, fault: str | None) -> None:
    wire = body(protocol, fault)
    whole_text, whole_err = drive(engine(protocol, fast), [wire])
    expected = OUTCOMES[fault]
    assert (type(whole_err) if whole_err else None) is expected, whole_err
    if fault is None:
        assert whole_text == TEXT
    else:
        assert TEXT.startswith(whole_text) and whole_text.startswith("Hello"[:3])  # partial text kept
    for cut in range(1, len(wire)):
        e = engine(protocol, fast)
        text, err = drive(e, [wire[:cut], wire[cut:]])
        assert (text, type(err) if err else None) == (whole_text, expected), (cut, err)
        assert e.result is not None and e.result.text == whole_text
        assert e.result.status == ("ok" if expected is None else "error")
        if err is not None:
            assert err.result is e.result  # the partial result travels with the error
    e = engine(protocol, fast)
    text, err = drive(e, [wire[i : i + 1] for i in range(len(wire))])
    assert (text, type(err) if err else None) == (whole_text, expected)


@pytest.mark.parametrize("early", [False, True], ids=["read-to-end", "early-cancel"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancel_at_every_step(protocol: ProtocolName, early: bool) -> None:
    wire = body(protocol)
    reads = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    for k in range(len(reads) + 1):
        e = engine(protocol, True, early_cancel=early)
        text, err = drive(e, reads, cancel_after=k)
        assert e.result is not None
        if e.result.status == "ok":  # the end marker had already arrived: nothing left to stop
            assert k >= len(reads) - 1 and err is None and text == TEXT
            continue
        assert isinstance(err, CancelledError) and e.result.status == "cancelled", (k, err)
        assert e.result.wasted_ms_after_stop is not None
        after = e.result.server["client_after_stop"]
        if early:
            assert after["bytes"] == 0  # the stop ends the reads
        else:
            assert after["bytes"] == sum(map(len, reads[k:]))  # read to the end, counted as waste
        assert TEXT.startswith(text)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deadlines_are_named_moments(protocol: ProtocolName) -> None:
    t = Timeouts(connect=None, first_token=0.5, idle=0.2, total=2.0)
    e = engine(protocol, True, t=t)
    sent = e.sent_ns
    assert e.interruption(sent + 499 * MS) is None
    assert isinstance(e.interruption(sent + 500 * MS), FirstTokenTimeout)
    wire = body(protocol)
    first = wire[: first_chunk_end(protocol, wire)]
    e.on_data(first, sent + 100 * MS)  # the first text: first_token no longer applies
    assert e.got_text and e.interruption(sent + 299 * MS) is None  # idle runs from that event
    assert isinstance(e.interruption(sent + 300 * MS), IdleTimeout)
    e.on_data(wire[len(first) :], sent + 250 * MS)  # the rest: events again, then the end marker
    assert e.interruption(sent + 449 * MS) is None
    assert e.deadline() == (sent + 450 * MS, "idle")  # the earliest limit wins
    e = engine(protocol, True, t=Timeouts(connect=None, first_token=None, idle=None, total=2.0))
    assert e.interruption(e.sent_ns + 1_999 * MS) is None
    assert isinstance(e.interruption(e.sent_ns + 2_000 * MS), TotalTimeout)


@pytest.mark.parametrize("fast", MODES, ids=["baseline", "fast"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keep_alive_lines_do_not_hold_a_stalled_stream_open(protocol: ProtocolName, fast: bool) -> None:
    """Idle runs from the last event: SSE comments and NDJSON blank lines are not progress (issue 11)."""
    e = engine(protocol, fast, t=Timeouts(connect=None, first_token=None, idle=0.2, total=None))
    sent = e.sent_ns
    wire = body(protocol)
    cut = first_chunk_end(protocol, wire)
    e.on_data(wire[:cut], sent + 10 * MS)
    ping = b": ping\n\n" if protocol == "openai" else b"\n"
    for i in range(1, 50):  # a ping every 100 ms for 5 s
        now = sent + 10 * MS + i * 100 * MS
        if e.interruption(now) is not None:
            break
        e.on_data(ping, now)
    err = e.interruption(now)
    assert isinstance(err, IdleTimeout) and now - sent <= 10 * MS + 300 * MS
    assert "keep-alive" in str(err)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_events_handed_over_by_a_source_are_recorded_like_reads(protocol: ProtocolName) -> None:
    """A replay or follower hands over parsed events: one recorder, the same metrics, no parsing at the end."""
    e = engine(protocol, True)
    t0 = e.sent_ns
    for i, p in enumerate(PIECES):
        e.on_events([TextDelta(p, 0)], t0 + (i + 1) * MS)
    e.on_events([DoneEvent("stop", {}, 0)], t0 + 9 * MS)
    assert e.on_eof(t0 + 9 * MS) == [] and e.end(t0 + 9 * MS) is None
    res = e.result
    assert res is not None and res.text == TEXT and res.status == "ok"
    assert res.metrics.ttft_ms == 1.0 and res.metrics.output_tokens == len(PIECES)
    assert [c.t_ns - t0 for c in res.chunks] == [(i + 1) * MS for i in range(len(PIECES))]
