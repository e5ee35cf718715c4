"""The client hook's logic against a scripted live stream (the real client + simulator run in test_cache_client)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from workbench._exceptions import CancelledError, TruncatedStreamError
from workbench._types import (
    DoneEvent,
    ProtocolName,
    Request,
    StreamEvent,
    StreamResult,
    TextDelta,
    Usage,
    UsageEvent,
)
from workbench.cache import CacheGate, ResponseCache
from workbench.stream import AsyncStream, EngineSpec, Starter, Stream, StreamEngine


class Scripted:
    """A live source made of chunks with gaps; `fail_after` raises TruncatedStreamError after that many."""

    calls = 0
    lock = threading.Lock()

    def __init__(
        self,
        request: Request,
        chunks: list[str],
        gap_s: float = 0.0,
        fail_after: int | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        with Scripted.lock:
            Scripted.calls += 1
        self.request, self.chunks, self.gap_s, self.fail_after, self.gate = (
            request,
            chunks,
            gap_s,
            fail_after,
            gate,
        )
        self._i = 0

    def open(self, engine: StreamEngine) -> None:
        engine.sent()
        if self.gate is not None:
            self.gate.wait(10)

    def read(self) -> list[StreamEvent] | None:
        i = self._i
        self._i += 1
        if i < len(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise TruncatedStreamError("connection closed mid-stream")
            time.sleep(self.gap_s)
            return [TextDelta(self.chunks[i], time.perf_counter_ns())]
        if i == len(self.chunks):
            t = time.perf_counter_ns()
            return [UsageEvent(Usage(3, len(self.chunks)), t), DoneEvent("stop", {}, t)]
        return None

    def close(self) -> None:
        pass


class Hook:
    """The cache's gate and a live source, driven by the stream drivers as the client drives them."""

    def __init__(self, cache: ResponseCache, *, backend: str, protocol: ProtocolName) -> None:
        self.gate = CacheGate(cache, identity=backend)
        self.flights = self.gate.flights
        self.spec = EngineSpec(backend=backend, url=backend, protocol=protocol)

    def open(self, request: Request, live: Callable[[], object]) -> Stream:
        return Stream(request, Starter(request, self.spec, live, gate=self.gate))

    def aopen(self, request: Request, live: Callable[[], object]) -> AsyncStream:
        return AsyncStream(request, Starter(request, self.spec, live, gate=self.gate))


@pytest.fixture(autouse=True)
def _reset() -> None:
    Scripted.calls = 0


def req(p: str = "q") -> Request:
    return Request.chat("sim-small", p, temperature=0)


def test_miss_then_exact_hit_with_the_same_chunks() -> None:
    hook = Hook(ResponseCache(), backend="sim", protocol="ollama")
    s1 = hook.open(req(), lambda: Scripted(req(), ["a", "b", "c"], gap_s=0.003))
    ev1 = list(s1)
    assert s1.result.cache == "miss" and s1.role == "leader"
    s2 = hook.open(req(), lambda: Scripted(req(), ["never"]))
    ev2 = list(s2)
    assert Scripted.calls == 1
    assert s2.result.cache == "exact" and s2.role == "hit"
    assert [e.text for e in ev1 if isinstance(e, TextDelta)] == [
        e.text for e in ev2 if isinstance(e, TextDelta)
    ]
    assert [type(e) for e in ev1] == [type(e) for e in ev2]
    assert s2.result.metrics.ttft_ms < s1.result.metrics.ttft_ms  # type: ignore[operator]
    assert s2.result.saved_ms is not None and s2.result.saved_ms > 0


def test_failed_stream_is_not_stored_and_result_marked() -> None:
    cache = ResponseCache()
    hook = Hook(cache, backend="sim", protocol="ollama")
    s = hook.open(req(), lambda: Scripted(req(), ["a", "b", "c"], fail_after=2))
    with pytest.raises(TruncatedStreamError) as ei:
        list(s)
    assert ei.value.result is not None and ei.value.result.cache == "miss" and ei.value.result.text == "ab"
    assert len(cache.memory) == 0
    s2 = hook.open(req(), lambda: Scripted(req(), ["a", "b", "c"]))
    list(s2)
    assert s2.result.cache == "miss" and Scripted.calls == 2


def test_cancelled_stream_is_not_stored() -> None:
    cache = ResponseCache()
    hook = Hook(cache, backend="sim", protocol="ollama")
    s = hook.open(req(), lambda: Scripted(req(), ["a", "b", "c"]))
    with contextlib.suppress(CancelledError):  # a stopped stream raises CancelledError, as the client's do
        for _ in s:
            s.cancel()
    assert s.result.status == "cancelled" and len(cache.memory) == 0


def test_bypass_policy() -> None:
    cache = ResponseCache()
    hook = Hook(cache, backend="sim", protocol="ollama")
    hot = Request.chat("sim-small", "q", temperature=0.9)
    for _ in range(2):
        s = hook.open(hot, lambda: Scripted(hot, ["a"]))
        list(s)
        assert s.result.cache == "bypass"
    assert Scripted.calls == 2 and len(cache.memory) == 0


def test_single_flight_16_threads_one_backend_call_live_events() -> None:
    cache = ResponseCache()
    hook = Hook(cache, backend="sim", protocol="ollama")
    gate = threading.Event()
    barrier = threading.Barrier(16)
    out: dict[int, tuple[list[str], StreamResult, str]] = {}

    def worker(i: int) -> None:
        r = req("same prompt")
        barrier.wait()
        s = hook.open(r, lambda: Scripted(r, ["x", "y", "z"], gap_s=0.005, gate=gate))
        texts = [e.text for e in s if isinstance(e, TextDelta)]
        out[i] = (texts, s.result, s.role)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while hook.flights.counters.get("followers") < 15 and time.monotonic() < deadline:
        time.sleep(0.002)
    gate.set()
    for t in threads:
        t.join(10)
    assert Scripted.calls == 1
    assert sorted(r for _, _, r in out.values()) == ["follower"] * 15 + ["leader"]
    assert all(t == ["x", "y", "z"] for t, _, _ in out.values())
    assert all(res.cache == "miss" and res.ok for _, res, _ in out.values())
    # followers got chunks spread over time (as they arrived), not in one lump at the end
    for _, res, role in out.values():
        if role == "follower":
            assert res.metrics.e2e_ms - res.metrics.ttft_ms >= 5  # type: ignore[operator]
    assert cache.stats()["total"]["stores"] == 1


def test_single_flight_leader_failure_reaches_followers() -> None:
    hook = Hook(ResponseCache(), backend="sim", protocol="ollama")
    gate = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        r = req("fails")
        s = hook.open(r, lambda: Scripted(r, ["x", "y", "z"], gap_s=0.002, fail_after=2, gate=gate))
        try:
            list(s)
        except TruncatedStreamError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while hook.flights.counters.get("followers") < 3 and time.monotonic() < deadline:
        time.sleep(0.002)
    gate.set()
    for t in threads:
        t.join(10)
    assert Scripted.calls == 1 and len(errors) == 4
    assert all(e.result is not None and e.result.text == "xy" for e in errors)  # type: ignore[attr-defined]


class AsyncScripted(Scripted):
    """The async face of `Scripted`: the same chunks, with `asyncio.sleep` gaps."""

    calls = 0

    def __init__(self, request: Request, chunks: list[str], gap_s: float = 0.0) -> None:
        AsyncScripted.calls += 1
        super().__init__(request, chunks, gap_s=0)
        self.async_gap_s = gap_s

    async def aopen(self, engine: StreamEngine) -> None:
        self.open(engine)

    async def aread(self) -> list[StreamEvent] | None:
        got = self.read()
        if got is not None:
            await asyncio.sleep(self.async_gap_s)
        return got

    async def aclose(self) -> None:
        pass


async def test_async_hook_single_flight_and_hit() -> None:
    AsyncScripted.calls = 0
    hook = Hook(ResponseCache(), backend="sim", protocol="openai")

    async def one() -> tuple[list[str], StreamResult]:
        r = req("async")
        async with hook.aopen(r, lambda: AsyncScripted(r, ["p", "q"], gap_s=0.01)) as s:
            texts = [e.text async for e in s if isinstance(e, TextDelta)]
        return texts, s.result

    outs = await asyncio.gather(*(one() for _ in range(8)))
    assert AsyncScripted.calls == 1
    assert all(t == ["p", "q"] and r.cache == "miss" for t, r in outs)
    texts, res = await one()
    assert texts == ["p", "q"] and res.cache == "exact" and AsyncScripted.calls == 1
