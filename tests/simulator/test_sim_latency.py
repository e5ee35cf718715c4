"""Latency model: determinism, TTFT vs prompt length, chunking, cold start, queueing, trace replay."""

from __future__ import annotations

import itertools
import threading
import time

import httpx
from simwire_helpers import chat_body, ndjson, sse_json

from workbench.simulator import Profile, Simulator


def _text_ollama(c: httpx.Client, prompt: str, **opts: object) -> str:
    r = c.post("/api/chat", json=chat_body(prompt, stream=False, options=opts))
    return str(r.json()["message"]["content"])


def test_deterministic_under_seed() -> None:
    with Simulator(Profile.instant(seed=7)) as a, Simulator(Profile.instant(seed=7)) as b:
        with Simulator(Profile.instant(seed=8)) as other:
            ca, cb, co = (httpx.Client(base_url=s.url) for s in (a, b, other))
            t1 = _text_ollama(ca, "explain caching")
            assert t1 == _text_ollama(ca, "explain caching")  # same server, same request
            assert t1 == _text_ollama(cb, "explain caching")  # another server, same seed
            assert t1 != _text_ollama(co, "explain caching")  # another seed
            assert t1 != _text_ollama(ca, "explain streaming")  # another prompt
            assert t1 != _text_ollama(ca, "explain caching", seed=3)  # the request's own seed
            assert _text_ollama(ca, "explain caching", seed=3) == _text_ollama(cb, "explain caching", seed=3)
            for c in (ca, cb, co):
                c.close()


def test_ttft_grows_with_prompt_length() -> None:
    profile = Profile(ttft_ms=20, ttft_per_prompt_token_ms=1.0, token_delay_ms=0, jitter=0)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        ttft = {}
        for n in (5, 200):
            rid = f"ttft-{n}"
            c.post(
                "/api/chat",
                json=chat_body(" ".join(["word"] * n), options={"num_predict": 3}),
                headers={"X-Request-Id": rid},
            )
            gt = sim.ground_truth(rid)
            assert gt.prompt_tokens == n
            ttft[n] = (gt.token_emit_ns[0] - gt.received_ns) / 1e6
        assert ttft[5] >= 25  # 20 ms + 5 tokens x 1 ms (a lower bound: the server is never early)
        assert ttft[200] >= 220
        assert ttft[200] > ttft[5] + 50


def test_token_delay_and_tokens_per_chunk() -> None:
    profile = Profile(ttft_ms=0, ttft_per_prompt_token_ms=0, token_delay_ms=10, jitter=0, tokens_per_chunk=3)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        r = c.post(
            "/v1/chat/completions", json=chat_body(stream=True, max_tokens=7), headers={"X-Request-Id": "tpc"}
        )
        chunks, _ = sse_json(r.content)
        pieces = [ch["choices"][0]["delta"]["content"] for ch in chunks[1:]]
        assert [len(p.split()) for p in pieces] == [3, 3, 1]
        # The server never emits early: chunk i is due 30 ms (3 tokens x 10 ms) after chunk i-1's due time.
        gt = sim.ground_truth("tpc")
        offsets_ms = [(t - gt.received_ns) / 1e6 for t in gt.token_emit_ns]
        assert len(offsets_ms) == 3
        assert offsets_ms[1] >= 30 and offsets_ms[2] >= 60


def test_cold_start_first_request_and_after_idle() -> None:
    profile = Profile.instant(cold_start=True, load_ms=150, cold_after_s=0.4)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:

        def ask(rid: str) -> dict[str, object]:
            r = c.post("/api/chat", json=chat_body(options={"num_predict": 2}), headers={"X-Request-Id": rid})
            return ndjson(r.content)[-1]

        first = ask("cold-1")
        warm = ask("cold-2")
        time.sleep(0.6)
        again = ask("cold-3")
        assert sim.ground_truth("cold-1").load_ms >= 150 and first["load_duration"] >= 150e6  # type: ignore[operator]
        assert sim.ground_truth("cold-2").load_ms == 0 and warm["load_duration"] == 0
        assert sim.ground_truth("cold-3").load_ms >= 150 and again["load_duration"] >= 150e6  # type: ignore[operator]
        gt = sim.ground_truth("cold-1")
        assert (gt.token_emit_ns[0] - gt.received_ns) / 1e6 >= 150


def test_max_parallel_queues_requests() -> None:
    profile = Profile(ttft_ms=120, ttft_per_prompt_token_ms=0, token_delay_ms=0, jitter=0, max_parallel=1)
    with Simulator(profile) as sim:
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                with httpx.Client(base_url=sim.url) as c:
                    body = chat_body(stream=False, options={"num_predict": 2})
                    c.post("/api/chat", json=body, headers={"X-Request-Id": f"q-{i}"}).raise_for_status()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
        queued = sorted(sim.ground_truth(f"q-{i}").queued_ms for i in range(3))
        assert queued[0] < 60
        assert queued[2] >= 180  # waited for two 120 ms requests ahead of it
        # Never two generations at once: emit intervals do not overlap.
        spans = sorted(
            (sim.ground_truth(f"q-{i}").received_ns, sim.ground_truth(f"q-{i}").emit_ns[-1]) for i in range(3)
        )
        firsts = sorted(sim.ground_truth(f"q-{i}").emit_ns[0] for i in range(3))
        assert firsts[1] - firsts[0] >= 100e6 and firsts[2] - firsts[1] >= 100e6
        assert len(spans) == 3


def test_trace_replay() -> None:
    profile = Profile(trace_ms=(30.0, 5.0, 40.0))
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        c.post(
            "/api/generate",
            json={"model": "sim-small", "prompt": "x", "options": {"num_predict": 5}},
            headers={"X-Request-Id": "tr"},
        )
        gt = sim.ground_truth("tr")
        offsets_ms = [(t - gt.received_ns) / 1e6 for t in gt.token_emit_ns]
        due_ms = [30, 35, 75, 80, 120]  # ttft 30, then gaps 5, 40, 5, 40
        assert all(o >= d for o, d in zip(offsets_ms, due_ms, strict=True))
        assert offsets_ms[-1] < 120 + 500


def test_jitter_is_deterministic() -> None:
    profile = Profile(ttft_ms=0, ttft_per_prompt_token_ms=0, token_delay_ms=4, jitter=1.0, seed=3)
    from workbench.simulator.latency import schedule
    from workbench.simulator.text import rng_for

    a = schedule(profile, 10, rng_for("latency", 3, "m", "p"))
    b = schedule(profile, 10, rng_for("latency", 3, "m", "p"))
    ga, gb = list(itertools.islice(a.gaps, 50)), list(itertools.islice(b.gaps, 50))
    assert ga == gb and len(set(ga)) > 10
    assert all(0 <= g <= 8e6 for g in ga)


def test_trace_from_stamps_round_trip() -> None:
    from workbench.simulator import trace_from_stamps

    trace = trace_from_stamps(1_000_000, [21_000_000, 26_000_000, 56_000_000])
    assert trace == (20.0, 5.0, 30.0)
    with Simulator(Profile(trace_ms=trace)) as sim, httpx.Client(base_url=sim.url) as c:
        c.post("/api/chat", json=chat_body(options={"num_predict": 3}), headers={"X-Request-Id": "rt"})
        gt = sim.ground_truth("rt")
        offsets_ms = [(t - gt.received_ns) / 1e6 for t in gt.token_emit_ns]
        assert offsets_ms[0] >= 20 and offsets_ms[1] >= 25 and offsets_ms[2] >= 55


def test_per_request_override_forces_cold_load(http: httpx.Client, sim: Simulator) -> None:
    hdr = {"X-Sim-Override": '{"cold_after_s": 0, "load_ms": 60}', "X-Request-Id": "force-cold"}
    done = ndjson(http.post("/api/chat", json=chat_body(options={"num_predict": 2}), headers=hdr).content)[-1]
    assert sim.ground_truth("force-cold").load_ms >= 60 and done["load_duration"] >= 60e6
    http.post("/api/chat", json=chat_body(options={"num_predict": 2}), headers={"X-Request-Id": "not-cold"})
    assert sim.ground_truth("not-cold").load_ms == 0
