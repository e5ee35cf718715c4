"""The threaded server: TLS + HTTP/2 next to HTTP/1.1, ground truth, disconnects, shutdown, stats, CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
from simwire_helpers import chat_body, ndjson, sse_json

from workbench.simulator import Profile, Simulator


def test_tls_http2_and_http11_on_one_server() -> None:
    with Simulator(Profile.instant(), tls=True, http2=True) as sim:
        assert sim.url.startswith("https://127.0.0.1:") and sim.ca_path is not None
        with httpx.Client(http2=True, verify=sim.ssl_context(), base_url=sim.url) as h2:
            r = h2.post("/v1/chat/completions", json=chat_body(stream=True, max_tokens=4))
            assert r.http_version == "HTTP/2"
            chunks, done = sse_json(r.content)
            assert done and len(chunks) == 5
            r = h2.post("/api/chat", json=chat_body(options={"num_predict": 3}))
            assert r.http_version == "HTTP/2" and ndjson(r.content)[-1]["done"] is True
        ctx = ssl.create_default_context(cafile=sim.ca_path)  # what a client does with Backend.verify
        with httpx.Client(verify=ctx, base_url=sim.url) as h1:
            r = h1.post("/api/chat", json=chat_body(options={"num_predict": 3}))
            assert r.http_version == "HTTP/1.1" and ndjson(r.content)[-1]["eval_count"] == 3
        with httpx.Client(base_url=sim.url) as untrusted, pytest.raises(httpx.ConnectError):
            untrusted.get("/api/version")
        assert set(sim.stats().http_versions) == {"2", "1.1"}


def test_h2_fault_resets_one_stream_only() -> None:
    profile = Profile(ttft_ms=0, token_delay_ms=5, jitter=0)
    with Simulator(profile, tls=True, http2=True) as sim:

        async def go() -> tuple[BaseException | httpx.Response, ...]:
            async with httpx.AsyncClient(http2=True, verify=sim.ssl_context(), base_url=sim.url) as c:
                body = chat_body(options={"num_predict": 20})
                bad = c.post(
                    "/api/chat",
                    json=body,
                    headers={"X-Sim-Fault": "disconnect_after=3", "X-Request-Id": "h2-bad"},
                )
                good = c.post("/api/chat", json=body, headers={"X-Request-Id": "h2-good"})
                return tuple(await asyncio.gather(bad, good, return_exceptions=True))

        bad, good = asyncio.run(go())
        assert isinstance(bad, httpx.RemoteProtocolError)
        assert isinstance(good, httpx.Response) and good.http_version == "HTTP/2"
        assert ndjson(good.content)[-1]["done"] is True and ndjson(good.content)[-1]["eval_count"] == 20
        assert sim.ground_truth("h2-bad").aborted and sim.stats().connections == 1


def test_tls_without_http2_speaks_http11_only() -> None:
    with (
        Simulator(Profile.instant(), tls=True) as sim,
        httpx.Client(http2=True, verify=sim.ssl_context()) as c,
    ):
        assert c.get(sim.url + "/api/version").http_version == "HTTP/1.1"


def test_ground_truth_recorded(http: httpx.Client, sim: Simulator) -> None:
    r = http.post(
        "/v1/chat/completions",
        json=chat_body(stream=True, max_tokens=8, stream_options={"include_usage": True}),
        headers={"X-Request-Id": "gt-1"},
    )
    assert r.headers["x-request-id"] == "gt-1"
    gt = sim.ground_truth("gt-1")
    assert gt.status == 200 and gt.finished and not gt.disconnected and gt.model == "sim-small"
    assert gt.chunks_sent == 1 + 8 + 1 + 1  # role, content, usage, [DONE]
    assert len(gt.emit_ns) == gt.chunks_sent and len(gt.token_emit_ns) == 8
    assert list(gt.emit_ns) == sorted(gt.emit_ns) and gt.emit_ns[0] >= gt.received_ns
    assert gt.completion_tokens == 8 and gt.http_version == "1.1"
    with pytest.raises(KeyError):
        sim.ground_truth("never-sent", wait_s=0)


def test_ground_truth_spaced_stamps_with_delay() -> None:
    profile = Profile(ttft_ms=10, token_delay_ms=15, jitter=0)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        c.post("/api/chat", json=chat_body(options={"num_predict": 5}), headers={"X-Request-Id": "sp"})
        gt = sim.ground_truth("sp")
        offsets_ms = [(t - gt.received_ns) / 1e6 for t in gt.token_emit_ns]
        assert len(offsets_ms) == 5
        assert all(o >= 10 + 15 * i for i, o in enumerate(offsets_ms))  # never before its due time
        assert len(set(gt.token_emit_ns)) >= 3  # chunks that are not overdue go out in their own writes


def test_emit_stamps_match_client_arrival() -> None:
    """Server emit stamps and client arrival stamps share perf_counter_ns in one process."""
    profile = Profile(ttft_ms=5, token_delay_ms=10, jitter=0)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        arrivals = []
        with c.stream(
            "POST", "/api/chat", json=chat_body(options={"num_predict": 10}), headers={"X-Request-Id": "arr"}
        ) as r:
            for _ in r.iter_lines():
                arrivals.append(time.perf_counter_ns())
        gt = sim.ground_truth("arr")
        assert len(arrivals) == len(gt.emit_ns) == 11
        lags_ms = [(a - e) / 1e6 for a, e in zip(arrivals, gt.emit_ns, strict=True)]
        assert all(lag >= 0 for lag in lags_ms)
        assert sorted(lags_ms)[len(lags_ms) // 2] < 20  # loopback: the median lag is small (no Nagle delay)


def test_history_is_bounded() -> None:
    with Simulator(Profile.instant(), history=3) as sim, httpx.Client(base_url=sim.url) as c:
        for i in range(5):
            c.post(
                "/api/chat",
                json=chat_body(stream=False, options={"num_predict": 1}),
                headers={"X-Request-Id": f"h{i}"},
            )
        sim.ground_truth("h4")
        with pytest.raises(KeyError):
            sim.ground_truth("h0", wait_s=0)


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_client_disconnect_detected_and_generation_stops(path: str) -> None:
    profile = Profile(ttft_ms=0, token_delay_ms=20, jitter=0)
    with Simulator(profile) as sim, httpx.Client(base_url=sim.url) as c:
        body = chat_body(stream=True, max_tokens=500, options={"num_predict": 500})
        with c.stream("POST", path, json=body, headers={"X-Request-Id": "gone"}) as r:
            lines = r.iter_lines()
            for _ in range(3):
                next(lines)
        t_close = time.perf_counter_ns()
        assert sim.wait_disconnect("gone", 5.0)
        gt = sim.ground_truth("gone")
        assert gt.disconnected and gt.disconnect_ns is not None
        assert (gt.disconnect_ns - t_close) / 1e6 < 500
        sent = gt.chunks_sent
        time.sleep(0.15)
        assert sim.ground_truth("gone").chunks_sent == sent < 100  # stopped generating
        assert sim.stats().active == 0


def test_disconnect_before_first_token() -> None:
    with Simulator(Profile(ttft_ms=2000)) as sim, httpx.Client(base_url=sim.url, timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post("/api/chat", json=chat_body(), headers={"X-Request-Id": "early"})
        assert sim.wait_disconnect("early", 2.0)
        assert sim.ground_truth("early").chunks_sent == 0


def test_disconnect_while_queued() -> None:
    profile = Profile(ttft_ms=300, token_delay_ms=0, jitter=0, max_parallel=1)
    with Simulator(profile) as sim:
        t = threading.Thread(
            target=lambda: httpx.post(sim.url + "/api/chat", json=chat_body(stream=False), timeout=5),
        )
        t.start()
        time.sleep(0.05)
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=sim.url, timeout=0.1) as c:
            c.post("/api/chat", json=chat_body(stream=False), headers={"X-Request-Id": "queued"})
        assert sim.wait_disconnect("queued", 2.0)
        t.join(5)


def test_stop_does_not_hang_with_open_streams() -> None:
    profile = Profile(ttft_ms=0, token_delay_ms=50, jitter=0)
    sim = Simulator(profile).start()
    outcomes: list[str] = []
    started = threading.Event()

    def reader() -> None:
        try:
            with (
                httpx.Client(base_url=sim.url, timeout=10) as c,
                c.stream("POST", "/api/chat", json=chat_body(options={"num_predict": 10_000})) as r,
            ):
                for _ in r.iter_lines():
                    started.set()
            outcomes.append("ended")
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    assert started.wait(5)
    time.sleep(0.1)
    t0 = time.perf_counter()
    sim.stop()
    assert time.perf_counter() - t0 < 3.0
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert len(outcomes) == 3 and "ended" not in outcomes  # no stream looked complete
    assert not sim.running
    sim.stop()  # idempotent


def test_several_simulators_and_stats() -> None:
    with Simulator(Profile.instant()) as a, Simulator(Profile.instant(models=("other",))) as b:
        assert a.url != b.url
        with httpx.Client() as c:
            for _ in range(3):
                assert c.post(a.url + "/api/chat", json=chat_body(stream=False)).status_code == 200
            assert (
                c.post(b.url + "/api/chat", json={**chat_body(stream=False), "model": "other"}).status_code
                == 200
            )
        for _ in range(2):
            with httpx.Client() as fresh:
                fresh.get(a.url + "/api/version")
        st = a.stats()
        assert st.requests == 5
        assert st.connections == 3  # one kept-alive connection for the POSTs, one per fresh client
        assert b.stats().requests == 1 and b.stats().connections == 1


def test_cli_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", "0", "--instant"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line
        url = line.split()[3]
        r = httpx.post(url + "/api/chat", json=chat_body(stream=False, options={"num_predict": 2}), timeout=5)
        assert r.json()["eval_count"] == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_knob(capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.simulator.serve_cli import main

    assert main(["--tokens-per-chunk", "0", "--port", "0"]) == 2
    assert "tokens_per_chunk" in capsys.readouterr().out


def test_cli_profile_from_args(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from workbench.simulator.serve_cli import build_parser, profile_from_args

    trace = Path(str(tmp_path)) / "trace.json"
    trace.write_text("[25, 5, 7.5]")
    ns = build_parser().parse_args(
        ["--seed", "4", "--token-delay-ms", "3", "--max-parallel", "2", "--cold-start", "--trace", str(trace)]
    )
    p = profile_from_args(ns)
    assert (p.seed, p.token_delay_ms, p.max_parallel, p.cold_start, p.trace_ms) == (
        4,
        3.0,
        2,
        True,
        (25.0, 5.0, 7.5),
    )
    assert profile_from_args(build_parser().parse_args(["--instant"])).token_delay_ms == 0


@pytest.mark.parametrize(("path", "early"), [("/v1/chat/completions", True), ("/api/chat", False)])
def test_response_headers_timing_follows_each_server(path: str, early: bool) -> None:
    """OpenAI-style servers (vLLM, the OpenAI API) answer with headers at once and the first token after
    prefill; Ollama's Go server sends its headers with the first write, so they wait for the first token."""
    with (
        Simulator(Profile.instant(ttft_ms=300.0, seed=1)) as sim,
        httpx.Client(base_url=sim.url, timeout=10) as http,
    ):
        t0 = time.perf_counter()
        body = chat_body(stream=True, max_tokens=3) if early else chat_body(options={"num_predict": 3})
        with http.stream("POST", path, json=body) as r:
            headers_s = time.perf_counter() - t0
            r.read()
        assert r.status_code == 200
        assert (headers_s < 0.2) if early else (headers_s >= 0.25), headers_s
