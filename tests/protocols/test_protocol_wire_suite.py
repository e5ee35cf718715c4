"""Wire-compatibility suite: bodies of real servers (wire/*.sse, wire/*.ndjson, each with a `.meta.json` saying
which server, which request and what it exercises), parsed by both parser modes to the same events, whole and
split at every byte, and recorded into the results the sidecar expects (text, reasoning, tool calls, choices,
finish reasons, usage or chunk-counted tokens, server figures)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from protocol_wire_samples import run, shape, wire_samples

from workbench import Request
from workbench._types import ProtocolName, StreamEvent, StreamResult
from workbench.metrics import Recorder

SAMPLES = wire_samples()
NAMES = pytest.mark.parametrize("name", sorted(SAMPLES))
MS = 1_000_000


def test_the_suite_covers_every_server_and_feature() -> None:
    servers = " ".join(meta["server"] for _, _, meta in SAMPLES.values()).lower()
    for server in ("ollama", "llama.cpp", "llama-cpp-python", "vllm", "sglang", "tgi", "lm studio", "openai",
                   "deepseek"):
        assert server in servers, server
    bodies = b"".join(body for _, body, _ in SAMPLES.values())
    for feature in (b'"thinking"', b'"reasoning_content"', b'"reasoning"', b'"tool_calls"', b'"obfuscation"',
                    b'"timings"', b'"done_reason":"load"', b'"index":1', b"data:{", b": ping", b": keep-alive"):
        assert feature in bodies, feature
    for name, (_, _, meta) in SAMPLES.items():
        assert meta["server"] and meta["request"] and meta["exercises"] and meta["expect"], name


def _per_chunk(protocol: ProtocolName, body: bytes) -> list[bytes]:
    """The body cut after every event (SSE) or line (NDJSON): one chunk per read, as a live stream arrives."""
    sep = b"\n\n" if protocol == "openai" else b"\n"
    parts = body.split(sep)
    return [p + sep for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@NAMES
@pytest.mark.parametrize("reads", ["whole", "per_chunk"])
def test_both_parser_modes_give_the_same_events(name: str, reads: str) -> None:
    # whole: one read, decided by the per-payload paths; per_chunk: after the first chunk, every read takes
    # the fast parser's msgspec batch path, so its schema is held to the baseline's json.loads reading
    protocol, body, _ = SAMPLES[name]
    cut = [body] if reads == "whole" else _per_chunk(protocol, body)
    assert b"".join(cut) == body
    fast, fast_err = run(protocol, cut, fast=True)
    base, base_err = run(protocol, cut, fast=False)
    assert fast_err is None and base_err is None, (fast_err, base_err)
    assert fast == base
    assert fast, "a recorded body gives events"


@NAMES
def test_split_at_every_byte(name: str) -> None:
    protocol, body, _ = SAMPLES[name]
    whole = shape(run(protocol, [body], fast=True)[0])
    for fast in (True, False):
        for i in range(len(body) + 1):
            events, err = run(protocol, [body[:i], body[i:]], fast=fast)
            assert err is None, (fast, i, err)
            assert shape(events) == whole, (fast, i)


def _record(protocol: ProtocolName, events: list[StreamEvent]) -> StreamResult:
    rec = Recorder(Request.chat("m", "hi"), backend="wire", protocol=protocol)
    rec.sent(0)
    # each event gets its own arrival stamp (1 ms apart), as if every chunk came in its own read
    for k, ev in enumerate(events):
        t = (k + 1) * MS
        rec.event(ev._replace(t_ns=t) if isinstance(ev, tuple) else dataclasses.replace(ev, t_ns=t))
    return rec.finish(end_ns=(len(events) + 2) * MS)


def _calls(result_calls: Any) -> list[list[Any]]:
    return [[c.index, c.id, c.name, json.loads(c.arguments)] for c in result_calls]


@NAMES
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])
def test_recorded_result_is_what_the_server_meant(name: str, fast: bool) -> None:
    protocol, body, meta = SAMPLES[name]
    exp = meta["expect"]
    events, err = run(protocol, [body], fast=fast)
    assert err is None
    r = _record(protocol, events)
    assert r.text == exp["text"]
    assert r.reasoning == exp.get("reasoning", "")
    assert r.finish_reason == exp["finish_reason"]
    usage = None if r.usage is None else [r.usage.prompt_tokens, r.usage.completion_tokens]
    assert usage == exp["usage"]
    m = r.metrics
    assert m.tokens_source == exp.get("tokens_source", "usage")
    if m.tokens_source == "usage":
        assert m.output_tokens == exp["usage"][1]
    if "output_tokens" in exp:
        assert m.output_tokens == exp["output_tokens"]
    assert _calls(r.tool_calls) == exp.get("tool_calls", [])
    choices = [[c.index, c.text, c.finish_reason] for c in r.choices]
    assert choices == exp.get("choices", [])
    for key, value in exp.get("server", {}).items():
        assert r.server[key] == value, key
    for key in exp.get("server_absent", []):
        assert key not in r.server
    done = [ev for ev in events if type(ev).__name__ == "DoneEvent"]
    assert len(done) == 1
    assert {str(k): v for k, v in done[0].finish_reasons.items()} == exp.get("finish_reasons", {})
    # token chunks: choice 0's chunks with output (answer text, reasoning, tool-call pieces)
    n_output = sum(1 for c in r.chunks if c.is_output)
    assert n_output == len(r.chunks) == len(m.itl_ms) + (1 if r.chunks else 0)
    if "n_token_chunks" in exp:
        assert n_output == exp["n_token_chunks"]
    if r.chunks:
        assert m.ttft_ms == r.chunks[0].t_ns / MS
    if exp["text"]:
        first_text = next(c.t_ns for c in r.chunks if c.text) / MS
        assert m.first_text_ms == first_text
        assert (m.first_text_ms > m.ttft_ms) == bool(exp.get("reasoning") or exp.get("first_text_after_ttft"))
    else:
        assert m.first_text_ms is None
