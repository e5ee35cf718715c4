"""Bounded parsing: a line / event over `max_event_bytes` is MalformedStreamError naming its size, in both parser
modes, with the events before it kept; framing costs linear time (judged against a reference in the same run)."""

from __future__ import annotations

import time

import pytest
from protocol_wire_samples import SAMPLES, run, shape, text_of

from workbench._exceptions import MalformedStreamError
from workbench._types import ProtocolName, StreamEvent
from workbench.protocols import DEFAULT_MAX_EVENT_BYTES, make_parser

IMPLS = pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])
PROTOCOLS = pytest.mark.parametrize("protocol", ["ollama", "openai"])
CAP = 1000

GOOD = {
    "ollama": b'{"model":"m","message":{"role":"assistant","content":"ok"},"done":false}\n',
    "openai": b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n',
}


def _feed(protocol: ProtocolName, fast: bool, reads: list[bytes], cap: int = CAP) -> tuple[list[StreamEvent], Exception]:
    parser = make_parser(protocol, fast=fast, max_event_bytes=cap)
    events: list[StreamEvent] = []
    with pytest.raises(MalformedStreamError) as info:
        for i, data in enumerate(reads):
            events += parser.feed(data, i)
            if parser.error is not None:
                raise parser.error
        events += parser.close(len(reads))
    return events, info.value


def test_default_limit_is_far_above_any_real_chunk() -> None:
    assert DEFAULT_MAX_EVENT_BYTES >= 8 * 1024 * 1024


@IMPLS
@PROTOCOLS
@pytest.mark.parametrize("split", [1, 7, 64, 100_000], ids=lambda n: f"reads_of_{n}")
def test_unterminated_line_over_the_cap_is_malformed_with_its_size(protocol: ProtocolName, fast: bool, split: int) -> None:
    body = GOOD[protocol] + b"x" * (CAP * 3)
    reads = [body[i : i + split] for i in range(0, len(body), split)]
    events, err = _feed(protocol, fast, reads)
    assert text_of(events) == "ok", "the text before the long line is kept"
    msg = str(err)
    assert f"{CAP:,} bytes" in msg and "max_event_bytes" in msg, msg
    assert "raise the limit" in msg


@IMPLS
@PROTOCOLS
def test_complete_line_over_the_cap_in_one_read_keeps_the_events_before_it(protocol: ProtocolName, fast: bool) -> None:
    sep = b"\n" if protocol == "ollama" else b"\n\n"
    long = (b'{"message":{"content":"' if protocol == "ollama" else b'data: {"choices":[{"delta":{"content":"')
    body = GOOD[protocol] * 2 + long + b"y" * (CAP * 2) + b'"}}' + sep + GOOD[protocol]
    events, err = _feed(protocol, fast, [body])
    assert text_of(events) == "okok"
    assert f"{CAP:,} bytes" in str(err) and "over the limit" in str(err)


@IMPLS
@PROTOCOLS
def test_lines_under_the_cap_pass(protocol: ProtocolName, fast: bool) -> None:
    for name, (proto, wire) in SAMPLES.items():
        if proto != protocol:
            continue
        events, err = run(protocol, [wire[i : i + 3] for i in range(0, len(wire), 3)], fast=fast)
        assert err is None, name
        parser = make_parser(protocol, fast=fast, max_event_bytes=600)
        small: list[StreamEvent] = []
        for data in (wire[i : i + 3] for i in range(0, len(wire), 3)):
            small += parser.feed(data, 0)
        small += parser.close(0)
        assert shape(small) == shape(events), name


@IMPLS
def test_comment_lines_without_a_blank_line_are_bounded(fast: bool) -> None:
    body = GOOD["openai"] + b": ping\n" * (CAP // 7 + 10)
    for split in (7, 50, len(body)):
        events, err = _feed("openai", fast, [body[i : i + split] for i in range(0, len(body), split)])
        assert text_of(events) == "ok"
        assert "SSE event" in str(err) and f"{CAP:,}" in str(err), str(err)


@IMPLS
def test_comments_ended_by_blank_lines_are_no_event_and_never_hit_the_cap(fast: bool) -> None:
    body = GOOD["openai"] + b": ping\n\n" * (CAP * 2) + b"data: [DONE]\n\n"
    parser = make_parser("openai", fast=fast, max_event_bytes=CAP)
    events: list[StreamEvent] = []
    for i in range(0, len(body), 97):
        events += parser.feed(body[i : i + 97], 0)
    events += parser.close(0)
    assert text_of(events) == "ok"


def _seconds(protocol: ProtocolName, fast: bool, total: int, read: int = 16_384, comments: bool = False) -> float:
    parser = make_parser(protocol, fast=fast, max_event_bytes=total * 2)
    piece = (b": ping\n" * (read // 7 + 1))[:read] if comments else b"z" * read
    t0 = time.perf_counter_ns()
    for _ in range(total // read):
        parser.feed(piece, 0)
    return (time.perf_counter_ns() - t0) / 1e9


@IMPLS
@pytest.mark.parametrize("case", ["ollama", "openai", "openai_comments"])
def test_framing_an_unterminated_line_is_linear(case: str, fast: bool) -> None:
    """4x the bytes must cost about 4x the time, not 16x: judged against the small run of the same process."""
    protocol: ProtocolName = "ollama" if case == "ollama" else "openai"
    comments = case.endswith("comments")
    small = min(_seconds(protocol, fast, 1 << 21, comments=comments) for _ in range(3))
    big = min(_seconds(protocol, fast, 1 << 23, comments=comments) for _ in range(2))
    assert big <= small * 4 * 2.5 + 0.02, (small, big)
