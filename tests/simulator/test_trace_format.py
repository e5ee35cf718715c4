"""Trace files and their replay on the wire: format checks, request matching, chunking, both protocols."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from simwire_helpers import chat_body, ndjson, sse_json

from workbench.simulator import Profile, ProfileError, Simulator, Trace, TraceError, TraceRecord
from workbench.simulator.profile import apply_overrides
from workbench.simulator.trace import plan_replay, prompt_sha256, spread_tokens

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "traces" / "llamacpp-gemma3-270m.jsonl"


def rec(
    prompt: str | None, chars: tuple[int, ...], *, ttft: float = 4.0, gap: float = 1.0, **kw: object
) -> TraceRecord:
    tokens = kw.pop("chunk_tokens", (1,) * len(chars))
    assert isinstance(tokens, tuple)
    return TraceRecord(
        ttft_ms=ttft,
        gaps_ms=(gap,) * max(len(chars) - 1, 0),
        chunk_chars=chars,
        chunk_tokens=tokens,
        output_tokens=sum(tokens),
        prompt=prompt,
        prompt_chars=len(prompt or ""),
        **kw,  # type: ignore[arg-type]
    )


def small_trace() -> Trace:
    return Trace(
        records=(
            rec("alpha question", (3, 5, 2, 7), finish_reason="stop"),
            rec("beta question", (1, 1, 4, 9, 2, 6), finish_reason="length", chunk_tokens=(1, 1, 2, 3, 1, 2)),
        ),
        model="rec-model",
        recorded_at="2025-01-01T00:00:00Z",
        note="hand-made",
        max_tokens=64,
    )


def test_spread_tokens_adds_up_and_follows_text_length() -> None:
    assert spread_tokens(4, (3, 1, 9, 2)) == (1, 1, 1, 1)
    spread = spread_tokens(10, (1, 1, 12, 2))
    assert sum(spread) == 10 and min(spread) >= 1 and spread[2] == max(spread)
    assert spread_tokens(2, (3, 3, 3)) == (1, 1, 0)
    assert spread_tokens(0, ()) == ()


def test_round_trip_and_header(tmp_path: Path) -> None:
    tr = small_trace()
    path = tr.dump(tmp_path / "t.jsonl")
    lines = path.read_bytes().splitlines()
    head = orjson.loads(lines[0])
    assert head["format"] == "workbench-trace" and head["version"] == 1
    assert (head["model"], head["recorded_at"], head["n_requests"]) == (
        "rec-model",
        "2025-01-01T00:00:00Z",
        2,
    )
    back = Trace.load(path)
    assert back == tr and back.records[1].chunk_tokens == (1, 1, 2, 3, 1, 2)
    assert back.records[0].prompt_sha256 == prompt_sha256("alpha question")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ('{"a": 1}\n', "not a workbench trace header"),
        ('{"format": "workbench-trace", "version": 9}\n{}\n', "version 9"),
        ('{"format": "workbench-trace", "version": 1}\n', "no recorded requests"),
        ('{"format": "workbench-trace", "version": 1}\nnot json\n', "t.jsonl:2: not JSON"),
        (
            '{"format": "workbench-trace", "version": 1}\n{"ttft_ms": 1, "gaps_ms": [], "chunk_chars": [1],'
            ' "chunk_tokens": [1], "output_tokens": 1, "api_key": "sk-x"}\n',
            "t.jsonl:2: unknown field(s) api_key",
        ),
        (
            '{"format": "workbench-trace", "version": 1}\n{"ttft_ms": 1, "gaps_ms": [1, 2], "chunk_chars": [1],'
            ' "chunk_tokens": [1], "output_tokens": 1}\n',
            "t.jsonl:2: gaps_ms has 2 entries for 1 chunks",
        ),
    ],
)
def test_bad_trace_files_say_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(text)
    with pytest.raises(TraceError, match=None) as info:
        Trace.load(path)
    assert message in str(info.value)
    with pytest.raises(ProfileError) as pinfo:  # the same through Profile(trace=path)
        Profile(trace=path)
    assert message in str(pinfo.value)


def test_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="workbench record"):
        Profile(trace=tmp_path / "nope.jsonl")


def test_profile_loads_a_path_and_lists_the_recorded_model_first(tmp_path: Path) -> None:
    path = small_trace().dump(tmp_path / "t.jsonl")
    p = Profile(trace=str(path))
    assert isinstance(p.trace, Trace) and p.replay_trace == small_trace()
    assert p.models[0] == "rec-model" and "sim-small" in p.models
    assert p.replace(seed=3).models.count("rec-model") == 1
    with pytest.raises(ProfileError, match="not both"):
        Profile(trace=small_trace(), trace_ms=(1.0,))
    with pytest.raises(ProfileError, match="per request"):
        apply_overrides(p, '{"trace": null}', None)


def test_matching_by_prompt_then_by_a_stable_hash() -> None:
    tr = small_trace()
    assert tr.pick(["beta question"]).prompt == "beta question"
    assert tr.pick(["system text\nalpha question", "alpha question"]).prompt == "alpha question"
    # Unknown prompts: the same request always gets the same record, and different prompts spread out.
    picks = {p: tr.pick([f"other prompt {p}"], seed=1).prompt for p in range(40)}
    assert picks == {p: tr.pick([f"other prompt {p}"], seed=1).prompt for p in range(40)}
    assert set(picks.values()) == {"alpha question", "beta question"}


def test_a_trace_without_prompt_text_still_matches_by_hash() -> None:
    bare = Trace(records=(rec(None, (2, 2), prompt_sha256=prompt_sha256("beta question")), rec("x", (9,))))
    assert bare.pick(["beta question"]).chunk_chars == (2, 2)


def test_max_tokens_below_the_recording_cuts_whole_chunks() -> None:
    tr = small_trace()
    data = chat_body("beta question")
    full = plan_replay(tr, data, "beta question", 0, None)
    assert full is not None and (full.n_chunks, full.completion_tokens, full.finish_reason) == (
        6,
        10,
        "length",
    )
    cut = plan_replay(tr, data, "beta question", 0, 5)
    assert cut is not None and (cut.n_chunks, cut.completion_tokens, cut.finish_reason) == (3, 4, "length")
    stop = plan_replay(tr, chat_body("alpha question"), "alpha question", 0, 100)
    assert stop is not None and (stop.n_chunks, stop.finish_reason) == (4, "stop")
    assert plan_replay(None, data, "beta question", 0, None) is None


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"])
def test_replay_sends_the_recorded_chunking_in_each_protocol(path: str) -> None:
    tr = small_trace()
    with Simulator(Profile(trace=tr)) as sim, httpx.Client(base_url=sim.url, timeout=10) as c:
        prompt = "beta question"
        if path.endswith("chat/completions") or path == "/api/chat":
            body = chat_body(prompt, model="rec-model")
        else:
            body = {"model": "rec-model", "prompt": prompt}
        if path.startswith("/v1"):
            body |= {"stream": True, "stream_options": {"include_usage": True}}
            events, done = sse_json(c.post(path, json=body, headers={"X-Request-Id": "r1"}).content)
            assert done
            pieces = [
                (ch.get("delta", {}).get("content") if "delta" in ch else ch.get("text"))
                for e in events
                for ch in e["choices"]
            ]
            texts = [p for p in pieces if p]
            finish = [ch["finish_reason"] for e in events for ch in e["choices"] if ch["finish_reason"]]
            assert finish == ["length"] and events[-1]["usage"]["completion_tokens"] == 10
        else:
            lines = ndjson(c.post(path, json=body, headers={"X-Request-Id": "r1"}).content)
            texts = [ln["message"]["content"] if "message" in ln else ln["response"] for ln in lines[:-1]]
            assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 10
        assert [len(t) for t in texts] == [1, 1, 4, 9, 2, 6]
        gt = sim.ground_truth("r1")
        assert len(gt.token_emit_ns) == 6
        offsets = [(t - gt.received_ns) / 1e6 for t in gt.token_emit_ns]
        assert all(o >= 4.0 + i * 1.0 for i, o in enumerate(offsets))  # ttft 4 ms, then a gap of 1 ms each


def test_non_streaming_replay_carries_the_whole_text() -> None:
    with Simulator(Profile(trace=small_trace())) as sim, httpx.Client(base_url=sim.url, timeout=10) as c:
        r = c.post("/api/chat", json=chat_body("alpha question", model="rec-model", stream=False))
        assert len(r.json()["message"]["content"]) == 3 + 5 + 2 + 7 and r.json()["done_reason"] == "stop"


def test_faults_still_apply_during_replay() -> None:
    with (
        Simulator(Profile(trace=small_trace(), truncate_after=2)) as sim,
        httpx.Client(base_url=sim.url) as c,
    ):
        lines = ndjson(c.post("/api/chat", json=chat_body("alpha question", model="rec-model")).content)
        assert len(lines) == 2 and not lines[-1]["done"]


def test_serve_cli_reads_a_recorded_trace(tmp_path: Path) -> None:
    from workbench.simulator.serve_cli import build_parser, profile_from_args

    path = small_trace().dump(tmp_path / "t.jsonl")
    p = profile_from_args(build_parser().parse_args(["--trace", str(path), "--seed", "2"]))
    assert p.replay_trace == small_trace() and p.trace_ms == () and p.seed == 2


def test_the_shipped_trace_comes_from_llamacpp() -> None:
    tr = Trace.load(SHIPPED)
    assert "llama.cpp" in tr.note and "gemma3-270m Q4_K_M" in tr.note and "2-core CPU" in tr.note
    assert tr.model == "gemma-3-270m" and 15 <= len(tr) <= 30 and tr.prompt_text
    assert all(r.prompt and r.ttft_ms and r.n_chunks == r.output_tokens for r in tr.records)
    assert all(r.tokens_source == "chunks" for r in tr.records)  # llama-cpp-python streams no usage


def test_a_client_leaving_mid_replay_stops_the_stream() -> None:
    # Long recorded gaps: the server must notice the disconnect while it waits on the precise timer.
    slow = Trace(records=(rec("slow one", (4,) * 20, ttft=5.0, gap=300.0),), model="rec-model")
    with Simulator(Profile(trace=slow)) as sim, httpx.Client(base_url=sim.url, timeout=10) as c:
        body = chat_body("slow one", model="rec-model", stream=True)
        with c.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-Id": "gone"}) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    break  # the first content chunk: leave
        assert sim.wait_disconnect("gone", timeout_s=2.0)
        gt = sim.ground_truth("gone")
        assert gt.disconnected and len(gt.token_emit_ns) < 5
