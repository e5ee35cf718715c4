from __future__ import annotations

import asyncio

from _cache_helpers import build_result

from workbench._types import DoneEvent, Request, StreamResult, TextDelta, UsageEvent
from workbench.cache import CacheEntry, ResponseCache
from workbench.cache.replay import AsyncReplay, Replay, ReplaySource, replay_starter


def test_entry_roundtrip_bytes_is_not_pickle() -> None:
    r = Request.chat("m", "hi")
    e = CacheEntry.from_result("k", build_result(r, ["a", "bé", "c"]))
    blob = e.to_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    back = CacheEntry.from_bytes(blob)
    assert back.chunks == e.chunks and back.text == "abéc" and back.usage == e.usage
    assert back.server == e.server and back.finish_reason == "stop"


def test_replay_reproduces_original_chunks_and_events() -> None:
    req = Request.chat("m", "hi")
    orig = build_result(req, ["The ", "quick", " brown", " fox"], gaps_ms=2)
    e = CacheEntry.from_result("k", orig)
    rp = Replay(Request.chat("m", "hi"), replay_starter(ReplaySource(e, kind="exact"), Request.chat("m", "hi")))
    events = list(rp)
    texts = [ev.text for ev in events if isinstance(ev, TextDelta)]
    assert texts == ["The ", "quick", " brown", " fox"]
    assert isinstance(events[-2], UsageEvent) and isinstance(events[-1], DoneEvent)
    res = rp.result
    assert res.status == "ok" and res.cache == "exact" and res.text == orig.text
    assert res.chunk_texts() == orig.chunk_texts()
    assert res.metrics.output_tokens == orig.metrics.output_tokens
    assert res.metrics.ttft_ms is not None and res.metrics.ttft_ms < orig.metrics.ttft_ms  # type: ignore[operator]
    assert res.saved_ms is not None and res.saved_ms > 0
    assert res.saved_tokens == orig.metrics.output_tokens
    assert res.finish_reason == "stop" and res.server["eval_count"] == 4


def test_replay_timing_keeps_inter_chunk_gaps() -> None:
    req = Request.chat("m", "hi")
    orig = build_result(req, ["a", "b", "c", "d"], gaps_ms=20)
    e = CacheEntry.from_result("k", orig)
    fast = Replay(req, replay_starter(ReplaySource(e), req)).result
    timed = Replay(req, replay_starter(ReplaySource(e, timing=True), req)).result

    # timed chunks come at their original offsets from the first chunk (a sleep can only overshoot, and a
    # late chunk does not push the later ones back: offsets, not gaps, are scheduled); untimed ones at once
    def offsets(r: StreamResult) -> list[float]:
        return [(c.t_ns - r.chunks[0].t_ns) / 1e6 for c in r.chunks]

    for o, t in zip(offsets(orig), offsets(timed), strict=True):
        assert t >= o - 0.5
    assert sum(timed.metrics.itl_ms) >= 0.9 * sum(orig.metrics.itl_ms)
    assert sum(fast.metrics.itl_ms) < 0.5 * sum(orig.metrics.itl_ms)
    # the first chunk is never delayed: a hit's TTFT stays below the original's (which waited 20 ms)
    assert timed.metrics.ttft_ms < orig.metrics.ttft_ms  # type: ignore[operator]


def test_cancelled_replay_is_marked() -> None:
    req = Request.chat("m", "hi")
    e = CacheEntry.from_result("k", build_result(req, ["a", "b", "c"]))
    rp = Replay(req, replay_starter(ReplaySource(e), req))
    it = iter(rp)
    next(it)
    rp.cancel()
    assert list(it) == []
    assert rp.result.status == "cancelled" and rp.result.text == "a"


async def test_async_replay_same_events() -> None:
    req = Request.chat("m", "hi")
    e = CacheEntry.from_result("k", build_result(req, ["x", "y"], gaps_ms=5))
    cache = ResponseCache()
    from workbench.cache import CacheHit

    hit = CacheHit(e, "k", "semantic", "semantic", 0.97, "hello")
    ar = cache.areplay(hit, req, timing=True)
    assert isinstance(ar, AsyncReplay)
    got = [ev async for ev in ar]
    await asyncio.sleep(0)
    assert [ev.text for ev in got if isinstance(ev, TextDelta)] == ["x", "y"]
    assert ar.result.cache == "semantic" and ar.result.cache_similarity == 0.97
    assert ar.result.cache_matched_prompt == "hello"
