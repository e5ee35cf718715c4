"""Record a server, replay the recording in the simulator, record the replay: the timing must carry over.

Fidelity is judged relative to the recording made in the same run (medians within 5%), never against a
clock figure. The servers run in their own process (`ProcessSimulator`) so the client under measurement
does not share a GIL with them, as with a real server. Also: what a trace file may and may not contain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from statistics import median
from typing import Any

import orjson
import pytest

from workbench.experiments import Workload
from workbench.experiments.record import main as record_main
from workbench.experiments.record import record
from workbench.simulator import ProcessSimulator, Profile, Simulator, Trace

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "traces" / "llamacpp-gemma3-270m.jsonl"
TOLERANCE = 0.05


def cut(trace: Trace, n_chunks: int) -> Trace:
    """The recording as a request with max_tokens=n_chunks would replay it (one token a chunk, as here)."""
    records = tuple(
        dataclasses.replace(
            r,
            gaps_ms=r.gaps_ms[: n_chunks - 1],
            chunk_chars=r.chunk_chars[:n_chunks],
            chunk_tokens=r.chunk_tokens[:n_chunks],
            output_tokens=min(r.output_tokens, n_chunks),
            finish_reason="length" if r.n_chunks > n_chunks else r.finish_reason,
        )
        for r in trace.records
    )
    return dataclasses.replace(trace, records=records)


def medians(trace: Trace) -> tuple[float, float]:
    return median(trace.ttft_ms()), median(trace.itl_ms())


def assert_reproduced(original: Trace, replayed: Trace) -> None:
    (t0, i0), (t1, i1) = medians(original), medians(replayed)
    msg = f"TTFT p50 {t0:.2f} -> {t1:.2f} ms, ITL p50 {i0:.3f} -> {i1:.3f} ms"
    assert abs(t1 / t0 - 1) <= TOLERANCE, msg
    assert abs(i1 / i0 - 1) <= TOLERANCE, msg
    # The chunking is the recording's, request by request (matched by prompt).
    by_prompt = {r.prompt: r for r in original.records}
    assert len(replayed) == len(original)
    for r in replayed.records:
        o = by_prompt[r.prompt]
        assert (r.chunk_chars, r.output_tokens, r.finish_reason) == (
            o.chunk_chars,
            o.output_tokens,
            o.finish_reason,
        )


@pytest.mark.slow
def test_replay_reproduces_a_recording_of_the_latency_model() -> None:
    # Jittered gaps and prompt-dependent TTFT: a replay that ignored the recording would miss the medians.
    # The precise timer keeps the original's gaps unquantized, like a real server's (see simulator/timer.py).
    profile = Profile(
        ttft_ms=60, ttft_per_prompt_token_ms=1.5, token_delay_ms=9, jitter=0.4, seed=5, precise_timer=True
    )
    workload = Workload.prompts("mixed", max_tokens=24)
    with ProcessSimulator(profile) as sim:
        original = record(sim.backend("openai"), workload, limit=16).trace
    with ProcessSimulator(Profile(trace=original)) as sim:
        replayed = record(sim.backend("openai"), workload, limit=16).trace
    assert replayed.model == original.model == "sim-small"
    assert_reproduced(original, replayed)


@pytest.mark.slow
def test_replay_reproduces_the_shipped_llamacpp_trace_in_the_other_protocol_too() -> None:
    shipped = Trace.load(SHIPPED)
    # max_tokens 16 keeps the run short; the replay cuts each recording there (and says finish=length).
    workload = Workload.from_list([r.prompt or "" for r in shipped.records], max_tokens=16)
    with ProcessSimulator(Profile(trace=SHIPPED)) as sim:
        # Ollama's protocol: the recording was OpenAI SSE from llama.cpp, the replay speaks either.
        replayed = record(sim.backend("ollama"), workload).trace
    assert replayed.model == "gemma-3-270m"  # the recorded name is the simulator's first model
    assert {r.protocol for r in replayed.records} == {"ollama"}
    assert_reproduced(cut(shipped, 16), replayed)


class KeyGate:
    """ASGI middleware: 401 unless the request carries the expected key, so a recording proves it was sent."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key, self.seen = app, key, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if auth != f"Bearer {self.key}":
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b'{"error": {"message": "bad key"}}'})
                return
            self.seen += 1
        await self.app(scope, receive, send)


@pytest.mark.parametrize("where", ["flag", "env"])
def test_the_trace_file_holds_no_key_and_no_url_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    key = "sk-test-0123456789abcdef-SECRET"
    out = tmp_path / "trace.jsonl"
    sim = Simulator(Profile.instant())
    gate = KeyGate(sim._app, key)
    sim._app = gate  # type: ignore[assignment]
    with sim:
        url = sim.url.replace("http://", "http://alice:pa55word@")
        argv = ["--url", url, "--out", str(out), "--limit", "3", "--quiet"]
        if where == "flag":
            argv += ["--api-key", key]
        else:
            monkeypatch.setenv("OPENAI_API_KEY", key)
        rc = record_main(argv)
    assert rc == 0 and gate.seen >= 4  # models, warm-up and three prompts all carried the key
    raw = out.read_bytes()
    for secret in (key, "sk-test", "pa55word", "alice", "Bearer", "uthorization", "127.0.0.1", str(sim.port)):
        assert secret.encode() not in raw, secret
    lines = [orjson.loads(x) for x in raw.splitlines()]
    assert lines[0]["format"] == "workbench-trace" and lines[0]["model"] == "sim-small"
    allowed = {
        "prompt", "prompt_chars", "prompt_sha256", "protocol", "endpoint", "ttft_ms", "gaps_ms",
        "chunk_chars", "chunk_tokens", "finish_reason", "output_tokens", "tokens_source",
    }  # fmt: skip
    assert all(set(rec) <= allowed for rec in lines[1:]) and len(lines) == 4


def test_no_prompt_text_keeps_only_length_and_hash_and_still_replays(tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    workload = Workload.prompts("mixed", limit=3)
    with Simulator(Profile.instant(default_tokens_min=5, default_tokens_max=9)) as sim:
        rc = record_main(["--url", sim.url, "--out", str(out), "--limit", "3", "--no-prompt-text", "--quiet"])
    assert rc == 0
    raw = out.read_text()
    assert all(item.text not in raw for item in workload.items)
    trace = Trace.load(out)
    assert not trace.prompt_text and all(r.prompt is None and r.prompt_chars > 0 for r in trace.records)
    # The simulator still finds each prompt's own recording through the hash.
    for item, r in zip(workload.items, trace.records, strict=True):
        assert trace.pick([item.text]) is r


def test_record_says_why_when_every_request_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.jsonl"
    with Simulator(Profile.instant(error_status=400)) as sim:
        rc = record_main(["--url", sim.url, "--out", str(out), "--limit", "2", "--warmup", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "nothing recorded" in err and "400" in err
