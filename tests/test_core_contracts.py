from __future__ import annotations

import pytest

from workbench import Backend, ChunkRecord, ConfigError, Optimizations, Request, Usage
from workbench.metrics import Recorder, compute_metrics
from workbench.optimizations import describe


def test_optimizations_presets_and_description() -> None:
    assert Optimizations.baseline().enabled() == []
    assert Optimizations.baseline().label() == "baseline"
    assert set(Optimizations.transport().enabled()) == {"connection_pool", "http2", "fast_parse", "early_cancel"}
    rows = describe()
    assert {r["name"] for r in rows} == set(Optimizations().as_dict())
    assert all(r["explain"] and r["source"] for r in rows)
    with pytest.raises(ValueError):
        Optimizations(concurrency=0)


def test_backend_hides_key_and_checks_url() -> None:
    b = Backend("http://127.0.0.1:1/", api_key="sk-secret")
    assert "sk-secret" not in repr(b) and b.url == "http://127.0.0.1:1"
    with pytest.raises(ConfigError):
        Backend("127.0.0.1:11434")


def test_request_validation() -> None:
    with pytest.raises(ConfigError):
        Request(model="m")
    r = Request.chat("m", "hi", system="be brief")
    assert [m.role for m in r.messages] == ["system", "user"] and r.last_user_text == "hi"


def test_metrics_follow_design_definitions() -> None:
    ms = 1_000_000
    chunks = [ChunkRecord(10 * ms, ""), ChunkRecord(20 * ms, "a"), ChunkRecord(25 * ms, "b"), ChunkRecord(40 * ms, "c")]
    m = compute_metrics(sent_ns=0, first_byte_ns=5 * ms, end_ns=50 * ms, chunks=chunks, usage=None,
                        connect_ms=1.5, connection_reused=False, bytes_received=99)
    assert m.ttfb_ms == 5 and m.ttft_ms == 20 and m.e2e_ms == 40 and m.done_ms == 50
    assert m.itl_ms == (5.0, 15.0)
    assert m.output_tokens == 3 and m.tokens_source == "chunks"
    assert m.tpot_ms == pytest.approx(10.0) and m.tokens_per_s == pytest.approx(150.0)
    m2 = compute_metrics(sent_ns=0, first_byte_ns=None, end_ns=50 * ms, chunks=chunks,
                         usage=Usage(completion_tokens=7), connect_ms=None, connection_reused=True, bytes_received=0)
    assert m2.output_tokens == 7 and m2.tokens_source == "usage" and m2.tpot_ms == pytest.approx(20 / 6)


def test_recorder_builds_result() -> None:
    from workbench import DoneEvent, TextDelta
    rec = Recorder(Request.chat("m", "hi"), backend="http://x", protocol="ollama")
    rec.sent(0)
    rec.received(10, 1_000_000)
    rec.event(TextDelta("", 1_000_000))
    rec.event(TextDelta("he", 2_000_000))
    rec.event(TextDelta("llo", 3_000_000))
    rec.event(DoneEvent("stop", {"eval_count": 2}, 4_000_000))
    res = rec.finish(end_ns=4_000_000)
    assert res.text == "hello" and res.ok and res.finish_reason == "stop"
    assert res.metrics.ttft_ms == 2.0 and res.server["eval_count"] == 2
