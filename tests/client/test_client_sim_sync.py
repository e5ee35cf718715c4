"""Sync Client against the real loopback simulator: streams, faults, timeouts, cancel, pooling, HTTP/2."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest
from client_sim_cases import FAULTS, T

from workbench import (
    Backend,
    CancelledError,
    ConnectError,
    ConnectTimeout,
    NotFoundError,
    Optimizations,
    Request,
    StatusError,
    TextDelta,
    Timeouts,
    WorkbenchError,
)
from workbench._types import ProtocolName
from workbench.client import Client
from workbench.simulator import Simulator

PROTOCOLS = pytest.mark.parametrize("protocol", ["ollama", "openai"])
SECRET = "sk-live-DO-NOT-LEAK-42"


def chat(n: int = 20) -> Request:
    return Request.chat("sim-small", "Tell me about streaming.", max_tokens=n)


@PROTOCOLS
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])
def test_normal_stream_matches_ground_truth(sim: Simulator, protocol: ProtocolName, fast: bool) -> None:
    opts = Optimizations(fast_parse=fast)
    with Client(Backend(sim.url, protocol=protocol, api_key=SECRET), optimizations=opts) as c:
        req = chat(12)
        with c.stream(req) as s:
            events = list(s)
        r = s.result
    gt = sim.ground_truth(req.id)
    assert r.status == "ok" and r.error is None and r.error_kind is None
    assert r.text == "".join(e.text for e in events if isinstance(e, TextDelta)) and r.text
    assert len(r.chunks) == len(gt.token_emit_ns) and r.metrics.output_tokens == gt.completion_tokens == 12
    assert r.metrics.tokens_source == "usage" and r.finish_reason == "length"
    assert r.http_version == "HTTP/1.1" and r.metrics.connection_reused is False
    assert r.metrics.ttfb_ms is not None and r.metrics.ttft_ms is not None and r.metrics.ttft_ms >= r.metrics.ttfb_ms
    assert r.optimizations == opts.as_dict()
    assert SECRET not in repr(r) and SECRET not in str(dataclasses.asdict(r))


@PROTOCOLS
@pytest.mark.parametrize(("name", "fault", "kind", "budget", "partial"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_end_in_typed_error_within_budget(
    sim: Simulator, protocol: ProtocolName, name: str, fault: str, kind: type[WorkbenchError], budget: float,
    partial: bool,
) -> None:
    with Client(Backend(sim.url, protocol=protocol), timeouts=T) as c:
        req = chat(40)
        t0 = time.perf_counter()
        with pytest.raises(kind) as info:
            c.run(req, headers={"X-Sim-Fault": fault})
        elapsed = time.perf_counter() - t0
    err = info.value
    assert type(err) is kind, (type(err), str(err))
    assert elapsed < budget, f"{name}: {elapsed:.2f}s > {budget}s"
    r = err.result
    assert r is not None and r.status == "error" and r.error_kind == kind.__name__ and r.error == str(err)
    assert bool(r.text) == partial, (name, r.text)
    if partial:
        assert r.text == "".join(c.text for c in r.chunks)
    if isinstance(err, StatusError):
        assert err.status_code == 503 and "overloaded" in err.server_message


@PROTOCOLS
def test_unknown_model_is_not_found(sim: Simulator, protocol: ProtocolName) -> None:
    with Client(Backend(sim.url, protocol=protocol)) as c, pytest.raises(NotFoundError) as info:
        c.run(Request.chat("no-such-model", "hi"))
    assert "no-such-model" in str(info.value) and info.value.status_code == 404


def _cancel_after_text(stream_iter: Client, req: Request, after: int, *, early: bool, sim: Simulator) -> tuple[
    CancelledError, float
]:
    """Iterate in this thread; a second thread cancels once `after` text events arrived."""
    del sim
    started = threading.Event()
    holder: dict[str, float] = {}
    with stream_iter.stream(req) as s:

        def stopper() -> None:
            started.wait(5)
            holder["t"] = time.perf_counter()
            s.cancel()

        th = threading.Thread(target=stopper)
        th.start()
        n = 0
        with pytest.raises(CancelledError) as info:
            for ev in s:
                if isinstance(ev, TextDelta):
                    n += 1
                    if n == after:
                        started.set()
        th.join(5)
    return info.value, time.perf_counter() - holder["t"]


@PROTOCOLS
def test_cancel_from_another_thread_closes_connection(sim: Simulator, protocol: ProtocolName) -> None:
    opts = Optimizations(early_cancel=True, connection_pool=True)
    with Client(Backend(sim.url, protocol=protocol), optimizations=opts) as c:
        req = chat(400)  # ~1.6 s of tokens
        err, after_cancel_s = _cancel_after_text(c, req, 3, early=True, sim=sim)
        r = err.result
        assert r is not None and r.status == "cancelled" and r.error_kind == "CancelledError"
        assert r.text and len(r.chunks) >= 3
        assert after_cancel_s < 0.5
        assert sim.wait_disconnect(req.id, 2), "the server must see the client go away"
        assert r.wasted_ms_after_stop is not None and r.wasted_ms_after_stop < 500
        # the pooled client still works after a cancelled stream
        assert c.run(chat(3)).ok


@PROTOCOLS
def test_cancel_while_blocked_in_a_read(sim: Simulator, protocol: ProtocolName) -> None:
    opts = Optimizations(early_cancel=True)
    with Client(Backend(sim.url, protocol=protocol), optimizations=opts) as c:
        req = chat(40)
        s = c.stream(req, headers={"X-Sim-Fault": "stall_after=2,stall_s=10"})
        timer = threading.Timer(0.4, s.cancel)
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(CancelledError) as info:
            for _ in s:
                pass
        assert time.perf_counter() - t0 < 0.4 + 0.5
        assert info.value.result is not None and info.value.result.status == "cancelled"
        assert sim.wait_disconnect(req.id, 2)


@PROTOCOLS
def test_cancel_without_early_cancel_reads_to_the_end(sim: Simulator, protocol: ProtocolName) -> None:
    with Client(Backend(sim.url, protocol=protocol), optimizations=Optimizations(early_cancel=False)) as c:
        req = chat(60)  # ~0.25 s
        err, _ = _cancel_after_text(c, req, 3, early=False, sim=sim)
    r = err.result
    assert r is not None and r.status == "cancelled"
    gt = sim.ground_truth(req.id)
    assert not gt.disconnected and gt.finished, "baseline read the whole response"
    waste = r.server["client_after_stop"]
    assert waste["chunks"] > 0 and waste["chars"] > 0 and waste["bytes"] > 0
    assert len(r.chunks) + waste["chunks"] == len(gt.token_emit_ns)
    assert r.wasted_ms_after_stop is not None and r.wasted_ms_after_stop > 0


def test_connection_pool_reuses_one_connection(sim: Simulator) -> None:
    before = sim.stats().connections
    with Client(Backend(sim.url, protocol="ollama"), optimizations=Optimizations(connection_pool=True)) as c:
        results = [c.run(chat(3)) for _ in range(4)]
    assert [r.metrics.connection_reused for r in results] == [False, True, True, True]
    assert results[0].metrics.connect_ms is not None and results[0].metrics.connect_ms > 0
    assert all(r.metrics.connect_ms == 0.0 for r in results[1:])
    assert sim.stats().connections - before == 1


def test_baseline_opens_a_connection_per_request(sim: Simulator) -> None:
    before = sim.stats().connections
    with Client(Backend(sim.url, protocol="openai"), optimizations=Optimizations()) as c:
        results = [c.run(chat(3)) for _ in range(3)]
    assert [r.metrics.connection_reused for r in results] == [False, False, False]
    assert all((r.metrics.connect_ms or 0) > 0 for r in results)
    assert sim.stats().connections - before == 3


@PROTOCOLS
def test_http2_over_tls(tls_sim: Simulator, protocol: ProtocolName) -> None:
    assert tls_sim.ca_path is not None
    backend = Backend(tls_sim.url, protocol=protocol, verify=tls_sim.ca_path)
    with Client(backend, optimizations=Optimizations(http2=True, connection_pool=True)) as c:
        first, second = c.run(chat(5)), c.run(chat(5))
    assert first.http_version == second.http_version == "HTTP/2"
    assert first.metrics.connection_reused is False and second.metrics.connection_reused is True
    with Client(backend, optimizations=Optimizations(http2=False)) as c:
        assert c.run(chat(5)).http_version == "HTTP/1.1"


def test_tls_without_the_ca_is_a_clear_connect_error(tls_sim: Simulator) -> None:
    with Client(Backend(tls_sim.url, protocol="ollama")) as c, pytest.raises(ConnectError, match="TLS") as info:
        c.run(chat(3))
    assert "verify=" in str(info.value)


def test_auto_detect_both_protocols(sim: Simulator) -> None:
    with Client(sim.url) as c:
        assert c.protocol == "ollama"
        assert c.run(chat(3)).protocol == "ollama"
    with Client(sim.url + "/v1") as c:
        assert c.protocol == "openai"
        r = c.run(chat(3))
        assert r.protocol == "openai" and r.ok


def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        for protocol in ("auto", "ollama"):
            c = Client(Backend(f"http://127.0.0.1:{port}", protocol=protocol))  # type: ignore[arg-type]
            with pytest.raises(ConnectError, match="is the server running"):
                c.run(chat(3))


@PROTOCOLS
def test_complete_non_streaming(sim: Simulator, protocol: ProtocolName) -> None:
    with Client(Backend(sim.url, protocol=protocol, api_key=SECRET)) as c:
        req = chat(7)
        r = c.complete(req)
        ref = c.run(Request.chat("sim-small", "Tell me about streaming.", max_tokens=7))
    assert r.ok and r.text and len(r.chunks) == 1 and r.usage is not None and r.usage.completion_tokens == 7
    assert r.text == ref.text, "same seed, same prompt: same text streamed or not"
    assert SECRET not in str(dataclasses.asdict(r))


def test_connect_timeout_when_tls_handshake_never_answers() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)  # the kernel completes TCP; nobody ever speaks TLS
        url = f"https://127.0.0.1:{srv.getsockname()[1]}"
        c = Client(Backend(url, protocol="openai", verify=False), timeouts=Timeouts(connect=0.5))
        t0 = time.perf_counter()
        with pytest.raises(ConnectTimeout) as info:
            c.run(chat(3))
        assert time.perf_counter() - t0 < 1.5
        assert info.value.result is not None and info.value.result.error_kind == "ConnectTimeout"


def test_idle_limits_gaps_not_the_whole_stream(sim: Simulator) -> None:
    # 40 tokens x 15 ms = 0.6 s of streaming, but no gap near idle=0.3 s: no timeout may fire
    t = Timeouts(first_token=0.3, idle=0.3, total=None)
    with Client(Backend(sim.url, protocol="ollama"), timeouts=t) as c:
        r = c.run(chat(40), headers={"X-Sim-Fault": "token_delay_ms=15"})
    assert r.ok and r.metrics.e2e_ms is not None and r.metrics.e2e_ms > 300


def test_cancel_over_http2_from_another_thread(tls_sim: Simulator) -> None:
    assert tls_sim.ca_path is not None
    backend = Backend(tls_sim.url, protocol="openai", verify=tls_sim.ca_path)
    opts = Optimizations(http2=True, connection_pool=True, early_cancel=True)
    with Client(backend, optimizations=opts) as c:
        req = chat(40)
        s = c.stream(req, headers={"X-Sim-Fault": "stall_after=2,stall_s=10"})
        threading.Timer(0.3, s.cancel).start()
        t0 = time.perf_counter()
        with pytest.raises(CancelledError):
            for _ in s:
                pass
        assert time.perf_counter() - t0 < 0.8
        assert c.run(chat(3)).ok, "the client recovers after a cancelled HTTP/2 stream"
