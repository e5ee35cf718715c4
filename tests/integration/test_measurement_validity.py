"""The client's timings agree with what the simulator really sent (ground truth), under concurrency.

Both sides stamp with `perf_counter_ns()` in this process: the simulator right before the write that
carries a chunk, the client when the read carrying it returns. Their difference is the measurement error
plus loopback delivery; DESIGN.md's promise is that it stays within 2 ms at p99 with 16 streams at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import numpy as np
import polars as pl
import pytest
from _system import in_ci

from workbench import Backend, Optimizations, Request, StreamResult
from workbench.client import AsyncClient, Client, _shared
from workbench.metrics import chunks_frame, itl_frame, summarize, to_frame
from workbench.simulator import ProcessSimulator, Profile

pytestmark = pytest.mark.timing
T = TypeVar("T")

MS = 1_000_000
STREAMS = 16
# The client is judged against a control measured in the same attempt on the same simulator profile: a bare
# httpx reader that stamps each raw read and does nothing else. Scheduler noise on a shared 2-core machine
# delays both alike (a bare reader alone has shown p99 of 4-8 ms under load), so an absolute bar would judge
# the machine; the differences below judge what the client adds. A client that stamps 3 ms late fails the
# p50 bar in every attempt (test_a_client_stamping_3_ms_late_fails).
REL_P50_MS = 0.5    # client p50 − bare reader p50 (arrival − emit, per token chunk)
REL_P99_MS = 1.0    # client p99 − bare reader p99; and TTFT (client − truth) p99 − bare first-token p99
# Looser absolute bars, a sanity check that holds on any machine that can run the suite at all.
SANITY_P50_MS = 2.0
SANITY_P99_MS = 25.0
# Attempts (fresh streams each time) before a verdict: one burst of CPU starvation from elsewhere can delay a
# whole batch of reads on one side only. A client that stamps wrongly fails every attempt.
ATTEMPTS = 5

PROFILE = Profile(
    seed=7,
    ttft_ms=25.0,
    ttft_per_prompt_token_ms=0.0,
    token_delay_ms=4.0,
    jitter=0.5,
    default_tokens_min=40,
    default_tokens_max=60,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[ProcessSimulator]:
    # The server runs in its own process, as a real one would: an in-process simulator would compete with
    # the client for the GIL, and its writes would delay the very stamps being checked. Emit stamps stay
    # comparable: perf_counter_ns reads the system-wide monotonic clock on Linux.
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        with ProcessSimulator(PROFILE) as s:
            yield s
    finally:
        sys.setswitchinterval(old)


def _requests(protocol: str, n: int = STREAMS) -> list[Request]:
    return [Request.chat("sim-small", f"validity {protocol} prompt {k}", tags={"variant": protocol, "k": k})
            for k in range(n)]


def _gaps_ms(sim: ProcessSimulator, results: list[StreamResult]) -> tuple[np.ndarray, np.ndarray]:
    """Per token chunk: client arrival − server emit (ms); and TTFT client − TTFT from ground truth (ms)."""
    per_chunk: list[float] = []
    ttft_diff: list[float] = []
    for r in results:
        assert r.ok, r.error
        gt = sim.ground_truth(r.request_id)
        token_ns = [c.t_ns for c in r.chunks if c.text]
        assert len(token_ns) == len(gt.token_emit_ns) > 10
        for arrived, emitted in zip(token_ns, gt.token_emit_ns, strict=True):
            per_chunk.append((arrived - emitted) / MS)
        assert r.metrics.ttft_ms is not None
        gt_ttft_ms = (gt.token_emit_ns[0] - r.sent_ns) / MS
        ttft_diff.append(r.metrics.ttft_ms - gt_ttft_ms)
    return np.asarray(per_chunk), np.asarray(ttft_diff)


def _judge(sim: ProcessSimulator, results: list[StreamResult]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(arrival − emit per token chunk, TTFT client − truth per stream) in ms, after the checks that hold
    anywhere; None when the server fell behind and the attempt cannot be judged."""
    per_chunk, ttft_diff = _gaps_ms(sim, results)
    # A chunk cannot arrive before it was written: a negative gap means a mis-stamp, on any machine.
    assert per_chunk.min() >= 0.0, per_chunk.min()
    assert ttft_diff.min() >= 0.0, ttft_diff.min()
    # The simulator must really have spread tokens out, or the comparison is trivial; a starved server
    # writes overdue tokens in one batch, and such an attempt is not judged.
    gaps = np.concatenate([np.diff(sim.ground_truth(r.request_id).token_emit_ns) / MS for r in results])
    if np.median(gaps) < 1.0:
        return None
    return per_chunk, ttft_diff, ""


def _bare_lags(sim: ProcessSimulator, protocol: str,
               reads: list[tuple[str, list[tuple[int, bytes]]]]) -> tuple[np.ndarray, np.ndarray]:
    """For a bare httpx reader (stamp each read, count the frames in it): arrival − emit (ms) per token frame,
    and per stream the first token frame's arrival − emit."""
    sep = b"\n" if protocol == "ollama" else b"\n\n"
    out: list[float] = []
    first: list[float] = []
    for rid, blocks in reads:
        arrivals: list[int] = []
        for t, block in blocks:
            arrivals += [t] * block.count(sep)
        gt = sim.ground_truth(rid)
        lag = {e: (a - e) / MS for a, e in zip(arrivals, gt.emit_ns, strict=False)}
        tokens = [lag[e] for e in gt.token_emit_ns if e in lag]
        out += tokens
        first.append(tokens[0])
    return np.asarray(out), np.asarray(first)


CHECKS = ("p50 - bare p50", "p99 - bare p99", "first token p99 - bare", "p50 (sanity)", "p99 (sanity)")
BARS = (REL_P50_MS, REL_P99_MS, REL_P99_MS, SANITY_P50_MS, SANITY_P99_MS)


def _excess(client: tuple[np.ndarray, np.ndarray], bare: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[float, ...], str]:
    """The figure behind each of CHECKS for one attempt, and a note with both sides' figures."""
    (c_chunk, c_ttft), (b_chunk, b_first) = client, bare
    c50, c99 = float(np.percentile(c_chunk, 50)), float(np.percentile(c_chunk, 99))
    b50, b99 = float(np.percentile(b_chunk, 50)), float(np.percentile(b_chunk, 99))
    ct99, bt99 = float(np.percentile(c_ttft, 99)), float(np.percentile(b_first, 99))
    note = (f"client p50/p99 {c50:.2f}/{c99:.2f} ms vs bare reader {b50:.2f}/{b99:.2f} ms "
            f"(+{c50 - b50:.2f}/+{c99 - b99:.2f}); first token p99 client {ct99:.2f} vs bare {bt99:.2f} ms")
    return (c50 - b50, c99 - b99, ct99 - bt99, c50, c99), note


def _run_check(sim: ProcessSimulator, attempt: Callable[[], list[StreamResult]],
               control: Callable[[], tuple[np.ndarray, np.ndarray]], attempts: int = ATTEMPTS) -> tuple[bool, list[str]]:
    """Up to `attempts` rounds of (bare reader, client) on fresh streams. Each check passes when it holds in at
    least one round: noise from elsewhere on the machine hits a different check in each round, while an error
    of the client's own (a late stamp, slow work per chunk) shows in every round and fails its check."""
    notes: list[str] = []
    best = [float("inf")] * len(CHECKS)
    for _ in range(attempts):
        bare = _quiet_heap(control)  # the same conditions for both sides
        judged = _judge(sim, _quiet_heap(attempt))
        if judged is None:
            notes.append("server fell behind (median emit gap < 1 ms), not judged")
            continue
        excess, note = _excess(judged[:2], bare)
        notes.append(note)
        best = [min(b, e) for b, e in zip(best, excess, strict=True)]
        if all(b <= bar for b, bar in zip(best, BARS, strict=True)):
            return True, notes
    failed = [f"{name} best {b:.2f} ms > {bar} ms" for name, b, bar in zip(CHECKS, best, BARS, strict=True) if b > bar]
    return False, [*notes, "failed: " + ", ".join(failed)]


def _check(sim: ProcessSimulator, attempt: Callable[[], list[StreamResult]],
           control: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
    ok, notes = _run_check(sim, attempt, control)
    print("timing:", "; ".join(notes))  # shown with -s / on failure: both figures, every attempt
    if ok:
        return
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if not in_ci() and load > 1.5 * cores:
        pytest.skip(f"machine oversubscribed (load {load:.1f} on {cores} cores), timing not judged: {notes}")
    pytest.fail(f"client stamps later than a bare reader by more than {REL_P50_MS} ms at p50 or {REL_P99_MS} ms "
                f"at p99 (or beyond the sanity bars {SANITY_P50_MS}/{SANITY_P99_MS} ms) in {ATTEMPTS} attempts "
                f"(load {load:.1f} on {cores} cores): " + "; ".join(notes))


def _bare_request(protocol: str, req: Request) -> tuple[str, dict[str, object]]:
    msgs = [m.as_dict() for m in req.messages]
    if protocol == "ollama":
        return "/api/chat", {"model": req.model, "messages": msgs, "stream": True}
    return "/v1/chat/completions", {"model": req.model, "messages": msgs, "stream": True}


def _quiet_heap(attempt: Callable[[], T]) -> T:
    """Run `attempt` with the heap the test session built up so far frozen out of the garbage collector. By the
    time this runs, the whole suite's objects sit in the oldest generation, and a full collection over them
    pauses every thread for a millisecond or more: the stamps would then measure the test session's heap, not
    the client. Objects the attempt itself creates are still collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        return attempt()
    finally:
        gc.unfreeze()


def _async_case(sim: ProcessSimulator, protocol: str) -> tuple[Callable[[], list[StreamResult]],
                                                               Callable[[], tuple[np.ndarray, np.ndarray]]]:
    backend = Backend(sim.url, protocol=protocol)  # type: ignore[arg-type]
    opts = Optimizations(connection_pool=True, fast_parse=True)

    async def once() -> list[StreamResult]:
        async with AsyncClient(backend, optimizations=opts) as client:
            return list(await asyncio.wait_for(asyncio.gather(*(client.run(r) for r in _requests(protocol))), 60))

    async def bare() -> list[tuple[str, list[tuple[int, bytes]]]]:
        async with httpx.AsyncClient(timeout=60) as http:
            async def one(req: Request) -> tuple[str, list[tuple[int, bytes]]]:
                path, body = _bare_request(protocol, req)
                blocks: list[tuple[int, bytes]] = []
                async with http.stream("POST", sim.url + path, json=body, headers={"X-Request-Id": req.id}) as r:
                    async for block in r.aiter_raw():
                        blocks.append((time.perf_counter_ns(), block))
                return req.id, blocks

            return list(await asyncio.gather(*(one(r) for r in _requests(protocol))))

    # Each run gets its own event loop in a worker thread, so the check can stay synchronous.
    def in_loop(coro: Any) -> Any:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result(90)

    return (lambda: in_loop(once())), (lambda: _bare_lags(sim, protocol, in_loop(bare())))


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_async_16_streams_match_ground_truth(sim: ProcessSimulator, protocol: str) -> None:
    _check(sim, *_async_case(sim, protocol))


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_a_client_stamping_3_ms_late_fails(sim: ProcessSimulator, protocol: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The bars must catch a client that stamps late: with every arrival stamp moved 3 ms later (a test-only
    hook in the client), no attempt may pass. Stamps stay after the emit, so only the bars can catch it."""
    monkeypatch.setattr(_shared, "_TEST_ONLY_STAMP_DELAY_NS", 3 * MS)
    ok, notes = _run_check(sim, *_async_case(sim, protocol), attempts=3)
    assert not ok, f"a client stamping 3 ms late passed the timing check: {notes}"


def test_threaded_16_streams_match_ground_truth(sim: ProcessSimulator) -> None:
    backend = Backend(sim.url, protocol="ollama")

    def attempt() -> list[StreamResult]:
        with Client(backend, optimizations=Optimizations(connection_pool=True, fast_parse=True)) as client, \
                ThreadPoolExecutor(STREAMS) as pool:
            return list(pool.map(client.run, _requests("ollama"), timeout=60))

    def bare() -> np.ndarray:
        def one(http: httpx.Client, req: Request) -> tuple[str, list[tuple[int, bytes]]]:
            path, body = _bare_request("ollama", req)
            blocks: list[tuple[int, bytes]] = []
            with http.stream("POST", sim.url + path, json=body, headers={"X-Request-Id": req.id}) as r:
                for block in r.iter_raw():
                    blocks.append((time.perf_counter_ns(), block))
            return req.id, blocks

        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=STREAMS)) as http, \
                ThreadPoolExecutor(STREAMS) as pool:
            reads = list(pool.map(lambda r: one(http, r), _requests("ollama"), timeout=60))
        return _bare_lags(sim, "ollama", reads)

    _check(sim, attempt, bare)


@pytest.mark.parametrize("fast", [True, False])
def test_openai_role_chunk_is_not_the_first_token(sim: ProcessSimulator, fast: bool) -> None:
    client = Client(Backend(sim.url, protocol="openai"), optimizations=Optimizations(fast_parse=fast))
    try:
        # A stall before the first content chunk makes the simulator flush the role-only chunk at once and
        # send the first token 50 ms (plus the profile's TTFT) later, as servers that announce the role early do.
        r = client.run(Request.chat("sim-small", "role chunk first"),
                       headers={"X-Sim-Fault": "stall_after=0,stall_s=0.05"})
    finally:
        client.close()
    gt = sim.ground_truth(r.request_id)
    # The role-only chunk went out well before the first token...
    assert len(gt.emit_ns) > len(gt.token_emit_ns)
    assert gt.token_emit_ns[0] - gt.emit_ns[0] > 40 * MS
    assert r.metrics.ttfb_ms is not None and r.metrics.ttft_ms is not None
    # ... and TTFT is the first content chunk's arrival: never before that chunk was emitted (so never the
    # role chunk's arrival, 40+ ms earlier), and exactly the stamp of the first recorded chunk.
    gt_ttft = (gt.token_emit_ns[0] - r.sent_ns) / MS
    assert r.metrics.ttft_ms >= gt_ttft
    assert r.chunks[0].text and r.chunks[0].t_ns == r.sent_ns + round(r.metrics.ttft_ms * MS)
    assert len(r.chunks) == len(gt.token_emit_ns)  # the role chunk was not recorded as a token
    assert r.metrics.ttfb_ms <= r.metrics.ttft_ms
    assert r.metrics.output_tokens == gt.completion_tokens


def test_frames_and_summary_on_real_results(sim: ProcessSimulator) -> None:
    reqs = [Request.chat("sim-small", f"frame prompt {k % 3}",
                         tags={"variant": v, "repeat": k, "warmup": k == 0})
            for k in range(4) for v in ("base", "fast")]
    clients = {v: Client(Backend(sim.url, protocol="ollama"), optimizations=Optimizations(fast_parse=v == "fast"))
               for v in ("base", "fast")}
    try:
        results = [clients[str(r.tags["variant"])].run(r) for r in reqs]
    finally:
        for c in clients.values():
            c.close()
    f = to_frame(results)
    assert f.height == 8 and f["status"].to_list() == ["ok"] * 8
    assert f["opt_fast_parse"].to_list() == [False, True] * 4
    assert f["ttft_ms"].to_list() == [r.metrics.ttft_ms for r in results]
    # Ollama reports eval_count, so token counts come from the server's usage and match its ground truth.
    assert f["tokens_source"].to_list() == ["usage"] * 8
    assert f["output_tokens"].to_list() == [sim.ground_truth(r.request_id).completion_tokens for r in results]
    assert (f["n_chunks"] == f["itl_ms"].list.len() + 1).all()

    ch = chunks_frame(results)
    assert ch.height == sum(len(r.chunks) for r in results)
    last = ch.group_by("request_id", maintain_order=True).agg(pl.col("t_ms").max())
    assert last["t_ms"].to_list() == pytest.approx(f["e2e_ms"].to_list())
    first = ch.filter(pl.col("i") == 0)["t_ms"].to_list()
    assert first == pytest.approx(f["ttft_ms"].to_list())

    itl = itl_frame(results)
    assert itl.height == sum(len(r.metrics.itl_ms) for r in results)
    assert set(itl["variant"].unique().to_list()) == {"base", "fast"}

    s = summarize(f, metrics=("ttft_ms", "tokens_per_s"))
    assert s["variant"].unique(maintain_order=True).to_list() == ["base", "fast"]
    assert s["count"].to_list() == [3, 3, 3, 3] and s["warmup_excluded"].to_list() == [1, 1, 1, 1]
    base_ttft = f.filter((pl.col("variant") == "base") & ~pl.col("warmup"))["ttft_ms"]
    row = s.filter((pl.col("variant") == "base") & (pl.col("metric") == "ttft_ms")).row(0, named=True)
    assert row["mean"] == pytest.approx(base_ttft.mean()) and row["max"] == pytest.approx(base_ttft.max())
    assert 20.0 < row["p50"] < 200.0  # the profile's 25 ms TTFT, plus a little
    s_itl = summarize(itl, metrics=("itl_ms",))
    assert s_itl["count"].sum() == itl.filter(~pl.col("warmup")).height
