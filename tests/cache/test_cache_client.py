"""The cache wired into the real Client / AsyncClient, against the loopback simulator."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from workbench._exceptions import CancelledError, TruncatedStreamError, WorkbenchError
from workbench._types import Backend, Request, TextDelta
from workbench.cache import ResponseCache
from workbench.client import AsyncClient, AsyncStream, Client, Stream
from workbench.optimizations import Optimizations
from workbench.simulator import Profile, Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # a measurable TTFT and per-token delay, so hits and misses differ clearly
    with Simulator(Profile.instant(ttft_ms=40.0, token_delay_ms=3.0, seed=3)) as s:
        yield s


def req(prompt: str, **kw: object) -> Request:
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 12)
    return Request.chat("sim-small", prompt, **kw)  # type: ignore[arg-type]


def served(sim: Simulator) -> int:
    return sim.stats().requests


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_miss_then_exact_hit_replays_the_same_chunks(sim: Simulator, protocol: str) -> None:
    cache = ResponseCache()
    with Client(Backend(sim.url, protocol=protocol), cache=cache) as client:  # type: ignore[arg-type]
        before = served(sim)
        with client.stream(req(f"explain caching ({protocol})")) as s1:
            assert isinstance(s1, Stream)
            ev1 = list(s1)
        miss = s1.result
        s2 = client.stream(req(f"explain caching ({protocol})"))
        ev2 = list(s2)
        hit = s2.result
    assert served(sim) - before == 1
    assert miss.cache == "miss" and hit.cache == "exact"
    assert [e.text for e in ev1 if isinstance(e, TextDelta)] == [
        e.text for e in ev2 if isinstance(e, TextDelta)
    ]
    assert [type(e) for e in ev1] == [type(e) for e in ev2]
    assert hit.chunk_texts() == miss.chunk_texts() and hit.text == miss.text
    assert hit.metrics.output_tokens == miss.metrics.output_tokens and hit.usage == miss.usage
    assert hit.protocol == miss.protocol == protocol and hit.backend == miss.backend
    assert hit.metrics.ttft_ms < miss.metrics.ttft_ms / 2  # type: ignore[operator]
    assert hit.saved_ms is not None and hit.saved_ms > 20 and hit.saved_tokens == miss.metrics.output_tokens


def test_without_cache_results_say_off(sim: Simulator) -> None:
    with Client(sim.url) as client:
        assert client.run(req("no cache here")).cache == "off"


def test_replay_timing_reproduces_gaps(sim: Simulator) -> None:
    cache = ResponseCache(replay_timing=True)
    with Client(sim.url, cache=cache) as client:
        miss = client.run(req("timed replay please", max_tokens=10))
        hit = client.run(req("timed replay please", max_tokens=10))
    assert hit.cache == "exact"
    assert len(hit.metrics.itl_ms) == len(miss.metrics.itl_ms) > 3
    assert sum(hit.metrics.itl_ms) >= 0.9 * sum(miss.metrics.itl_ms)
    assert hit.metrics.ttft_ms < miss.metrics.ttft_ms  # type: ignore[operator]


@pytest.mark.parametrize("fault", ["disconnect_after=3", "truncate_after=3", "error_after=2"])
def test_failed_stream_is_not_stored(sim: Simulator, fault: str) -> None:
    cache = ResponseCache()
    with Client(sim.url, cache=cache) as client:
        r = req(f"this one breaks {fault}")
        with pytest.raises(WorkbenchError) as ei:  # each fault maps to its own StreamError subclass
            client.run(r, headers={"X-Sim-Fault": fault})
        assert getattr(ei.value, "result", None) is not None and ei.value.result.cache == "miss"  # type: ignore[attr-defined]
        assert len(cache.memory) == 0
        before = served(sim)
        ok = client.run(req(f"this one breaks {fault}"))
        assert ok.cache == "miss" and served(sim) - before == 1
        assert client.run(req(f"this one breaks {fault}")).cache == "exact"


def test_truncated_stream_error_type(sim: Simulator) -> None:
    with Client(sim.url, cache=ResponseCache()) as client, pytest.raises(TruncatedStreamError):
        client.run(req("cut me"), headers={"X-Sim-Fault": "truncate_after=2"})


def test_cancelled_stream_is_not_stored(sim: Simulator) -> None:
    cache = ResponseCache()
    with Client(sim.url, optimizations=Optimizations(early_cancel=True), cache=cache) as client:
        s = client.stream(req("stop me early", max_tokens=40))
        with pytest.raises(CancelledError) as ei:
            for i, _ in enumerate(s):
                if i == 2:
                    s.cancel()
        assert ei.value.result is not None and ei.value.result.status == "cancelled"
        assert len(cache.memory) == 0
        # leaving a `with` block early is a cancel too
        with client.stream(req("leave early", max_tokens=40)) as s2:
            next(iter(s2))
        assert s2.result.status == "cancelled" and len(cache.memory) == 0


def test_cancelled_replay_raises_like_a_live_stream(sim: Simulator) -> None:
    with Client(sim.url, cache=ResponseCache()) as client:
        client.run(req("replay then stop"))
        s = client.stream(req("replay then stop"))
        with pytest.raises(CancelledError) as ei:
            for _ in s:
                s.cancel()
        assert ei.value.result is not None and ei.value.result.cache == "exact"
        assert ei.value.result.status == "cancelled"


def test_temperature_bypass_goes_to_the_server_every_time(sim: Simulator) -> None:
    cache = ResponseCache()
    with Client(sim.url, cache=cache) as client:
        client.protocol  # noqa: B018 - detection is a request too; do it first
        before = served(sim)
        a = client.run(req("creative", temperature=0.9))
        b = client.run(req("creative", temperature=0.9))
        assert (a.cache, b.cache) == ("bypass", "bypass") and served(sim) - before == 2
        assert len(cache.memory) == 0
    with Client(sim.url, cache=ResponseCache(temperature_policy="replay")) as client:
        client.run(req("creative", temperature=0.9))
        assert client.run(req("creative", temperature=0.9)).cache == "exact"


def test_single_flight_16_threads_one_server_request(sim: Simulator) -> None:
    cache = ResponseCache()
    with Client(sim.url, optimizations=Optimizations(connection_pool=True), cache=cache) as client:
        client.protocol  # noqa: B018 - detect before the threads race
        barrier = threading.Barrier(16)
        out: list[tuple[str, str, list[str]]] = []
        lock = threading.Lock()

        def worker() -> None:
            r = req("the same question at the same time", max_tokens=20)
            barrier.wait()
            s = client.stream(r)
            texts = [e.text for e in s if isinstance(e, TextDelta)]
            with lock:
                out.append((s.result.cache, s.role, texts))

        before = served(sim)
        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert served(sim) - before == 1
    roles = sorted(r for _, r, _ in out)
    assert roles.count("leader") == 1 and len(out) == 16
    # a thread that arrived after the leader stored the answer is an exact hit; every other one followed
    assert set(roles) <= {"leader", "follower", "hit"}
    assert len({tuple(t) for _, _, t in out}) == 1 and out[0][2]


async def test_async_client_cache_and_single_flight(sim: Simulator) -> None:
    cache = ResponseCache()
    async with AsyncClient(sim.url, cache=cache) as client:
        await client.detect_protocol()
        before = served(sim)

        async def one() -> tuple[str, list[str]]:
            async with client.stream(req("async shared question")) as s:
                assert isinstance(s, AsyncStream)
                texts = [e.text async for e in s if isinstance(e, TextDelta)]
            return s.result.cache, texts

        outs = await asyncio.gather(*(one() for _ in range(8)))
        assert served(sim) - before == 1
        assert all(c == "miss" for c, _ in outs) and len({tuple(t) for _, t in outs}) == 1
        cache_kind, texts = await one()
        assert cache_kind == "exact" and texts == outs[0][1]
        r = await client.run(req("async shared question"))
        assert r.cache == "exact" and served(sim) - before == 1


def test_cache_events_and_stats_after_a_run(sim: Simulator) -> None:
    cache = ResponseCache()
    with Client(sim.url, cache=cache) as client:
        for _ in range(3):
            client.run(req("stats please"))
        client.run(req("hot", temperature=1.0))
    kinds = cache.events_frame()["kind"].to_list()
    assert kinds == ["miss", "exact", "exact", "bypass"]
    total = cache.stats_frame().row(-1, named=True)
    assert total["tier"] == "total" and total["hits"] == 2 and total["misses"] == 1 and total["bypass"] == 1
    t0 = time.perf_counter()
    assert cache.lookup(req("stats please"), backend=sim.url) is not None
    assert time.perf_counter() - t0 < 1


async def test_async_failed_and_cancelled_streams_are_not_stored(sim: Simulator) -> None:
    cache = ResponseCache()
    async with AsyncClient(sim.url, optimizations=Optimizations(early_cancel=True), cache=cache) as client:
        with pytest.raises(WorkbenchError) as ei:
            await client.run(req("async breaks"), headers={"X-Sim-Fault": "disconnect_after=2"})
        assert ei.value.result is not None and ei.value.result.cache == "miss"
        async with client.stream(req("async stop", max_tokens=40)) as s:
            async for _ in s:
                s.cancel()
                break
        assert s.result.status == "cancelled"
        assert len(cache.memory) == 0
        assert (await client.run(req("async breaks"))).cache == "miss"
        assert (await client.run(req("async breaks"))).cache == "exact"


def test_complete_replays_hits_and_stores_nothing(sim: Simulator) -> None:
    """complete() reads the cache like stream() does, but a non-streamed answer is never stored: one chunk
    would later be replayed to streaming callers as a lump."""
    cache = ResponseCache()
    with Client(Backend(sim.url), cache=cache) as client:
        streamed = client.run(req("complete after stream"))
        before = served(sim)
        hit = client.complete(req("complete after stream"))
        assert served(sim) == before and hit.cache == "exact" and hit.text == streamed.text
        miss = client.complete(req("complete first"))
        assert served(sim) == before + 1 and miss.cache == "miss" and miss.ok and len(miss.chunks) == 1
        again = client.run(req("complete first"))
        assert served(sim) == before + 2 and again.cache == "miss"
        assert len(again.chunks) > 1


async def test_async_complete_replays_hits_and_stores_nothing(sim: Simulator) -> None:
    cache = ResponseCache()
    async with AsyncClient(Backend(sim.url), cache=cache) as client:
        streamed = await client.run(req("async complete after stream"))
        before = served(sim)
        hit = await client.complete(req("async complete after stream"))
        assert served(sim) == before and hit.cache == "exact" and hit.text == streamed.text
        miss = await client.complete(req("async complete first"))
        assert served(sim) == before + 1 and miss.cache == "miss" and len(miss.chunks) == 1
        again = await client.run(req("async complete first"))
        assert served(sim) == before + 2 and again.cache == "miss"
