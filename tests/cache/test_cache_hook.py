"""The client hook's logic against a scripted live stream (the real client + simulator run in test_cache_client)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from workbench._exceptions import CancelledError, TruncatedStreamError
from workbench._types import DoneEvent, Request, StreamEvent, StreamResult, TextDelta, Usage, UsageEvent
from workbench.cache import ResponseCache
from workbench.cache._run import AsyncCacheHook, CacheHook
from workbench.metrics.recorder import Recorder


class Scripted:
    """A live stream made of chunks with gaps; `fail_after` raises TruncatedStreamError with the partial result."""

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
        self.rec = Recorder(request, backend="sim", protocol="ollama")
        self._result: StreamResult | None = None
        self.cancelled = False

    def _events(self) -> Iterator[StreamEvent | None]:
        self.rec.sent()
        if self.gate is not None:
            self.gate.wait(10)
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                yield None
                return
            time.sleep(self.gap_s)
            t = time.perf_counter_ns()
            self.rec.received(len(c), t)
            yield TextDelta(c, t)
        yield UsageEvent(Usage(3, len(self.chunks)), time.perf_counter_ns())
        yield DoneEvent("stop", {}, time.perf_counter_ns())

    def __iter__(self) -> Iterator[StreamEvent]:
        for ev in self._events():
            if ev is None:
                res = self.rec.finish("error", error=TruncatedStreamError("cut"))
                self._result = res
                raise TruncatedStreamError("connection closed mid-stream", result=res)
            self.rec.event(ev)
            yield ev
            if self.cancelled:
                self._result = self.rec.finish("cancelled", error=CancelledError("stop"))
                return
        self._result = self.rec.finish("ok")

    @property
    def result(self) -> StreamResult:
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _reset() -> None:
    Scripted.calls = 0


def req(p: str = "q") -> Request:
    return Request.chat("sim-small", p, temperature=0)


def test_miss_then_exact_hit_with_the_same_chunks() -> None:
    hook = CacheHook(ResponseCache(), backend="sim", protocol="ollama")
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
    hook = CacheHook(cache, backend="sim", protocol="ollama")
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
    hook = CacheHook(cache, backend="sim", protocol="ollama")
    s = hook.open(req(), lambda: Scripted(req(), ["a", "b", "c"]))
    for _ in s:
        s.cancel()
    assert s.result.status == "cancelled" and len(cache.memory) == 0


def test_bypass_policy() -> None:
    cache = ResponseCache()
    hook = CacheHook(cache, backend="sim", protocol="ollama")
    hot = Request.chat("sim-small", "q", temperature=0.9)
    for _ in range(2):
        s = hook.open(hot, lambda: Scripted(hot, ["a"]))
        list(s)
        assert s.result.cache == "bypass"
    assert Scripted.calls == 2 and len(cache.memory) == 0


def test_single_flight_16_threads_one_backend_call_live_events() -> None:
    cache = ResponseCache()
    hook = CacheHook(cache, backend="sim", protocol="ollama")
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
    hook = CacheHook(ResponseCache(), backend="sim", protocol="ollama")
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


class AsyncScripted:
    calls = 0

    def __init__(self, request: Request, chunks: list[str], gap_s: float = 0.0) -> None:
        AsyncScripted.calls += 1
        self.inner = Scripted(request, chunks, gap_s=0)
        self.gap_s = gap_s

    async def _gen(self) -> AsyncIterator[StreamEvent]:
        for ev in self.inner:
            await asyncio.sleep(self.gap_s)
            yield ev

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._gen()

    @property
    def result(self) -> StreamResult:
        return self.inner.result

    def cancel(self) -> None:
        self.inner.cancel()

    async def aclose(self) -> None:
        pass


async def test_async_hook_single_flight_and_hit() -> None:
    AsyncScripted.calls = 0
    hook = AsyncCacheHook(ResponseCache(), backend="sim", protocol="openai")

    async def one() -> tuple[list[str], StreamResult]:
        r = req("async")
        async with hook.open(r, lambda: AsyncScripted(r, ["p", "q"], gap_s=0.01)) as s:
            texts = [e.text async for e in s if isinstance(e, TextDelta)]
        return texts, s.result

    outs = await asyncio.gather(*(one() for _ in range(8)))
    assert AsyncScripted.calls == 1
    assert all(t == ["p", "q"] and r.cache == "miss" for t, r in outs)
    texts, res = await one()
    assert texts == ["p", "q"] and res.cache == "exact" and AsyncScripted.calls == 1
