"""AsyncClient against the real loopback simulator: the async twin of test_client_sim_sync."""

from __future__ import annotations

import asyncio
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
from workbench.client import AsyncClient
from workbench.simulator import Simulator

PROTOCOLS = pytest.mark.parametrize("protocol", ["ollama", "openai"])
SECRET = "sk-live-DO-NOT-LEAK-43"


def chat(n: int = 20) -> Request:
    return Request.chat("sim-small", "Tell me about streaming.", max_tokens=n)


@PROTOCOLS
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])
async def test_normal_stream(sim: Simulator, protocol: ProtocolName, fast: bool) -> None:
    opts = Optimizations(fast_parse=fast)
    async with AsyncClient(Backend(sim.url, protocol=protocol, api_key=SECRET), optimizations=opts) as c:
        req = chat(12)
        async with c.stream(req) as s:
            events = [ev async for ev in s]
        r = s.result
    gt = sim.ground_truth(req.id)
    assert r.status == "ok" and r.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert len(r.chunks) == len(gt.token_emit_ns) and r.metrics.output_tokens == 12
    assert r.http_version == "HTTP/1.1" and r.optimizations == opts.as_dict()
    assert SECRET not in repr(r) and SECRET not in str(dataclasses.asdict(r))


@PROTOCOLS
@pytest.mark.parametrize(("name", "fault", "kind", "budget", "partial"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_faults_end_in_typed_error_within_budget(
    sim: Simulator, protocol: ProtocolName, name: str, fault: str, kind: type[WorkbenchError], budget: float,
    partial: bool,
) -> None:
    async with AsyncClient(Backend(sim.url, protocol=protocol), timeouts=T) as c:
        t0 = time.perf_counter()
        with pytest.raises(kind) as info:
            await c.run(chat(40), headers={"X-Sim-Fault": fault})
        elapsed = time.perf_counter() - t0
    err = info.value
    assert type(err) is kind, (type(err), str(err))
    assert elapsed < budget, f"{name}: {elapsed:.2f}s > {budget}s"
    r = err.result
    assert r is not None and r.status == "error" and r.error_kind == kind.__name__
    assert bool(r.text) == partial, (name, r.text)
    if isinstance(err, StatusError):
        assert err.status_code == 503 and "overloaded" in err.server_message


@PROTOCOLS
async def test_unknown_model_is_not_found(sim: Simulator, protocol: ProtocolName) -> None:
    async with AsyncClient(Backend(sim.url, protocol=protocol)) as c:
        with pytest.raises(NotFoundError, match="no-such-model"):
            await c.run(Request.chat("no-such-model", "hi"))


@PROTOCOLS
async def test_cancel_from_another_task_closes_connection(sim: Simulator, protocol: ProtocolName) -> None:
    opts = Optimizations(early_cancel=True, connection_pool=True)
    async with AsyncClient(Backend(sim.url, protocol=protocol), optimizations=opts) as c:
        req = chat(400)
        got_three = asyncio.Event()
        stamps: dict[str, float] = {}

        async with c.stream(req) as s:

            async def stopper() -> None:
                await got_three.wait()
                stamps["cancel"] = time.perf_counter()
                s.cancel()

            task = asyncio.create_task(stopper())
            n = 0
            with pytest.raises(CancelledError) as info:
                async for ev in s:
                    if isinstance(ev, TextDelta):
                        n += 1
                        if n == 3:
                            got_three.set()
            await task
        assert time.perf_counter() - stamps["cancel"] < 0.5
        r = info.value.result
        assert r is not None and r.status == "cancelled" and r.text and len(r.chunks) >= 3
        assert await asyncio.to_thread(sim.wait_disconnect, req.id, 2)
        assert (await c.run(chat(3))).ok


@PROTOCOLS
async def test_cancel_while_awaiting_a_read_from_another_thread(sim: Simulator, protocol: ProtocolName) -> None:
    async with AsyncClient(Backend(sim.url, protocol=protocol), optimizations=Optimizations(early_cancel=True)) as c:
        req = chat(40)
        s = c.stream(req, headers={"X-Sim-Fault": "stall_after=2,stall_s=10"})
        timer = threading.Timer(0.4, s.cancel)
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(CancelledError):
            async for _ in s:
                pass
        assert time.perf_counter() - t0 < 0.9
        assert await asyncio.to_thread(sim.wait_disconnect, req.id, 2)


@PROTOCOLS
async def test_cancel_without_early_cancel_reads_to_the_end(sim: Simulator, protocol: ProtocolName) -> None:
    async with AsyncClient(Backend(sim.url, protocol=protocol)) as c:
        req = chat(60)
        async with c.stream(req) as s:
            n = 0
            with pytest.raises(CancelledError) as info:
                async for ev in s:
                    if isinstance(ev, TextDelta):
                        n += 1
                        if n == 3:
                            s.cancel()
    r = info.value.result
    assert r is not None and r.status == "cancelled"
    gt = await asyncio.to_thread(sim.ground_truth, req.id)
    assert not gt.disconnected
    waste = r.server["client_after_stop"]
    assert waste["chunks"] > 0 and len(r.chunks) + waste["chunks"] == len(gt.token_emit_ns)
    assert r.wasted_ms_after_stop is not None and r.wasted_ms_after_stop > 0


async def test_connection_pool_and_baseline(sim: Simulator) -> None:
    before = sim.stats().connections
    async with AsyncClient(Backend(sim.url, protocol="openai"), optimizations=Optimizations(connection_pool=True)) as c:
        pooled = [await c.run(chat(3)) for _ in range(3)]
    assert [r.metrics.connection_reused for r in pooled] == [False, True, True]
    assert sim.stats().connections - before == 1
    before = sim.stats().connections
    async with AsyncClient(Backend(sim.url, protocol="ollama")) as c:
        fresh = [await c.run(chat(3)) for _ in range(3)]
    assert [r.metrics.connection_reused for r in fresh] == [False, False, False]
    assert sim.stats().connections - before == 3


async def test_pooled_concurrent_streams(sim: Simulator) -> None:
    async with AsyncClient(Backend(sim.url, protocol="ollama"), optimizations=Optimizations(connection_pool=True)) as c:
        results = await asyncio.gather(*(c.run(chat(10)) for _ in range(6)))
    assert all(r.ok and r.metrics.output_tokens == 10 for r in results)
    assert len({r.request_id for r in results}) == 6


@PROTOCOLS
async def test_http2_over_tls(tls_sim: Simulator, protocol: ProtocolName) -> None:
    assert tls_sim.ca_path is not None
    backend = Backend(tls_sim.url, protocol=protocol, verify=tls_sim.ca_path)
    async with AsyncClient(backend, optimizations=Optimizations(http2=True, connection_pool=True)) as c:
        results = await asyncio.gather(*(c.run(chat(5)) for _ in range(3)))
    assert all(r.http_version == "HTTP/2" and r.ok for r in results)


async def test_auto_detect_and_unreachable(sim: Simulator) -> None:
    async with AsyncClient(sim.url) as c:
        assert (await c.run(chat(3))).protocol == "ollama"
    async with AsyncClient(sim.url + "/v1") as c:
        assert await c.detect_protocol() == "openai"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        async with AsyncClient(f"http://127.0.0.1:{sock.getsockname()[1]}") as c:
            with pytest.raises(ConnectError, match="is the server running"):
                await c.run(chat(3))


@PROTOCOLS
async def test_complete_non_streaming(sim: Simulator, protocol: ProtocolName) -> None:
    async with AsyncClient(Backend(sim.url, protocol=protocol, api_key=SECRET)) as c:
        r = await c.complete(chat(7))
    assert r.ok and r.text and len(r.chunks) == 1 and r.usage is not None and r.usage.completion_tokens == 7
    assert SECRET not in str(dataclasses.asdict(r))


async def test_connect_timeout_when_tls_handshake_never_answers() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        url = f"https://127.0.0.1:{srv.getsockname()[1]}"
        async with AsyncClient(Backend(url, protocol="ollama", verify=False), timeouts=Timeouts(connect=0.5)) as c:
            t0 = time.perf_counter()
            with pytest.raises(ConnectTimeout):
                await c.run(chat(3))
            assert time.perf_counter() - t0 < 1.5


async def test_cancel_over_http2_from_another_task(tls_sim: Simulator) -> None:
    assert tls_sim.ca_path is not None
    backend = Backend(tls_sim.url, protocol="ollama", verify=tls_sim.ca_path)
    opts = Optimizations(http2=True, connection_pool=True, early_cancel=True)
    async with AsyncClient(backend, optimizations=opts) as c:
        s = c.stream(chat(40), headers={"X-Sim-Fault": "stall_after=2,stall_s=10"})
        asyncio.get_running_loop().call_later(0.3, s.cancel)
        t0 = time.perf_counter()
        with pytest.raises(CancelledError):
            async for _ in s:
                pass
        assert time.perf_counter() - t0 < 0.8
        assert (await c.run(chat(3))).ok


async def test_outer_task_cancellation_keeps_a_cancelled_result(sim: Simulator) -> None:
    async with AsyncClient(Backend(sim.url, protocol="openai")) as c:
        s = c.stream(chat(40), headers={"X-Sim-Fault": "stall_after=2,stall_s=10"})

        async def consume() -> None:
            async for _ in s:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert s.result.status == "cancelled" and s.result.text
