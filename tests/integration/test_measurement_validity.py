"""The client's timings agree with what the simulator really sent (ground truth), under concurrency.

Both sides stamp with `perf_counter_ns()` in this process: the simulator right before the write that
carries a chunk, the client when the read carrying it returns. Their difference is the measurement error
plus loopback delivery plus whatever the machine's scheduler adds. That last part is not the client's: on a
shared 2-core machine a bare httpx reader alone shows p99 of 4-8 ms. So the client is judged against a
control measured in the same round on the same simulator profile, a bare reader that only stamps each raw
read: what the client adds on top of it must stay under REL_P50_MS / REL_P99_MS, per token chunk and for the
first token, with 16 streams at once. Looser absolute bars stay as a sanity check. Both are reported.

`WORKBENCH_TEST_ONLY_STAMP_DELAY_MS=3 pytest -m timing` (a test-only hook in the client) must fail;
test_a_client_stamping_3_ms_late_fails proves the same inside the suite.
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
import orjson
import polars as pl
import pytest
from _system import in_ci

from workbench import Backend, Optimizations, Request, StreamResult
from workbench.client import AsyncClient, Client
from workbench.metrics import chunks_frame, itl_frame, summarize, to_frame
from workbench.simulator import ProcessSimulator, Profile
from workbench.stream import engine as stream_engine

pytestmark = pytest.mark.timing
T = TypeVar("T")

MS = 1_000_000
STREAMS = 16
# What the client may add to a bare reader's arrival − emit, in ms. A correct client adds a few tens of µs (it
# stamps before it parses); one that stamps 3 ms late adds 3 ms to every chunk, so it fails the p50 bar in
# every round whatever the machine does (test_a_client_stamping_3_ms_late_fails).
REL_P50_MS = 0.5    # client p50 − bare p50, per token chunk
REL_P99_MS = 1.0    # client p99 − bare p99, per token chunk; and for the first token of each stream
# Looser absolute bars: a sanity check that holds on any machine fit to run the suite at all.
SANITY_P50_MS = 2.0
SANITY_P99_MS = 25.0
# Rounds (fresh streams each time) before a verdict: a burst of CPU starvation from elsewhere can delay one
# side's batch of reads and not the other's. An error of the client's own shows in every round.
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

Lags = tuple[np.ndarray, np.ndarray]  # (arrival − emit per token chunk, arrival − emit of each first token), ms


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


def _spread_out(sim: ProcessSimulator, request_ids: list[str]) -> bool:
    """Whether the simulator really spread tokens out, or the comparison is trivial: a starved server writes
    overdue tokens in one batch, and such a round is not judged."""
    gaps = np.concatenate([np.diff(sim.ground_truth(rid).token_emit_ns) / MS for rid in request_ids])
    return bool(np.median(gaps) >= 1.0)


def _client_lags(sim: ProcessSimulator, results: list[StreamResult]) -> Lags:
    """Per token chunk: client arrival − server emit; per stream: TTFT client − TTFT from ground truth (which
    is the first token's arrival − emit). Role-only and other text-less chunks never count: the recorder keeps
    text chunks only, and they must match the server's text chunks one for one."""
    per_chunk: list[float] = []
    ttft_diff: list[float] = []
    for r in results:
        assert r.ok, r.error
        gt = sim.ground_truth(r.request_id)
        token_ns = [c.t_ns for c in r.chunks if c.text]
        assert len(token_ns) == len(r.chunks) == len(gt.token_emit_ns) > 10
        for arrived, emitted in zip(token_ns, gt.token_emit_ns, strict=True):
            per_chunk.append((arrived - emitted) / MS)
        assert r.metrics.ttft_ms is not None
        gt_ttft_ms = (gt.token_emit_ns[0] - r.sent_ns) / MS
        ttft_diff.append(r.metrics.ttft_ms - gt_ttft_ms)
    lags = np.asarray(per_chunk), np.asarray(ttft_diff)
    # A chunk cannot arrive before it was written: a negative gap means a mis-stamp, on any machine.
    assert lags[0].min() >= 0.0 and lags[1].min() >= 0.0, (lags[0].min(), lags[1].min())
    return lags


Reads = list[tuple[str, list[tuple[int, bytes]]]]  # per stream: request id, (stamp, bytes) of each raw read


def _carries_text(protocol: str, frame: bytes) -> bool:
    """Whether one NDJSON line / SSE event carries text, as the simulator counts it for token_emit_ns."""
    if protocol == "ollama":
        return bool(orjson.loads(frame).get("message", {}).get("content"))
    payload = frame.strip().removeprefix(b"data:").strip()
    if not payload or payload == b"[DONE]":
        return False
    return any((c.get("delta") or {}).get("content") for c in orjson.loads(payload).get("choices") or ())


def _bare_lags(sim: ProcessSimulator, protocol: str, reads: Reads) -> Lags:
    """The control: arrival − emit per token frame for a bare reader (a frame arrives with the read that
    completes it, as in the client's parser), and the first token frame's arrival − emit per stream. Frames
    are split and classified here, after the run, so the reader itself did nothing but read and stamp."""
    sep = b"\n" if protocol == "ollama" else b"\n\n"
    per_chunk: list[float] = []
    first: list[float] = []
    for rid, blocks in reads:
        arrivals: list[int] = []
        buf = b""
        for t, block in blocks:
            buf += block
            *frames, buf = buf.split(sep)
            arrivals += [t for frame in frames if frame.strip() and _carries_text(protocol, frame)]
        emitted = sim.ground_truth(rid).token_emit_ns
        assert len(arrivals) == len(emitted) > 10, (rid, len(arrivals), len(emitted))
        lags = [(a - e) / MS for a, e in zip(arrivals, emitted, strict=True)]
        assert min(lags) >= 0.0, min(lags)
        per_chunk += lags
        first.append(lags[0])
    return np.asarray(per_chunk), np.asarray(first)


CHECKS = ("p50 - bare p50", "p99 - bare p99", "first token p99 - bare", "p50 (sanity)", "p99 (sanity)")
BARS = (REL_P50_MS, REL_P99_MS, REL_P99_MS, SANITY_P50_MS, SANITY_P99_MS)
RELATIVE = frozenset(CHECKS[:3])


def _figures(client: Lags, bare: Lags) -> tuple[tuple[float, ...], str]:
    """The figure behind each of CHECKS for one round, and a note with both sides' figures."""
    (c_chunk, c_first), (b_chunk, b_first) = client, bare
    c50, c99 = float(np.percentile(c_chunk, 50)), float(np.percentile(c_chunk, 99))
    b50, b99 = float(np.percentile(b_chunk, 50)), float(np.percentile(b_chunk, 99))
    cf99, bf99 = float(np.percentile(c_first, 99)), float(np.percentile(b_first, 99))
    note = (f"client p50/p99 {c50:.2f}/{c99:.2f} ms vs bare reader {b50:.2f}/{b99:.2f} ms "
            f"(+{c50 - b50:.2f}/+{c99 - b99:.2f}); first token p99 client {cf99:.2f} vs bare {bf99:.2f} ms")
    return (c50 - b50, c99 - b99, cf99 - bf99, c50, c99), note


Case = tuple[Callable[[], list[StreamResult]], Callable[[], Reads]]


def _run_check(sim: ProcessSimulator, protocol: str, case: Case,
               attempts: int = ATTEMPTS) -> tuple[list[str], list[str]]:
    """Up to `attempts` rounds of (bare reader, client) on fresh streams, in alternating order. Each check
    passes when it holds in at least one judged round: noise from elsewhere on the machine hits a different
    side in each round, while an error of the client's own (a late stamp, slow work per chunk) shows in every
    round. Returns (the names of the checks that failed, a note per round)."""
    attempt, control = case
    notes: list[str] = []
    best = [float("inf")] * len(CHECKS)
    for k in range(attempts):
        if k % 2:
            results = _quiet_heap(attempt)
            reads = _quiet_heap(control)
        else:
            reads = _quiet_heap(control)
            results = _quiet_heap(attempt)
        if not _spread_out(sim, [r.request_id for r in results] + [rid for rid, _ in reads]):
            notes.append("server fell behind (median emit gap < 1 ms), not judged")
            continue
        figures, note = _figures(_client_lags(sim, results), _bare_lags(sim, protocol, reads))
        notes.append(note)
        best = [min(b, f) for b, f in zip(best, figures, strict=True)]
        if all(b <= bar for b, bar in zip(best, BARS, strict=True)):
            return [], notes
    failed = [name for name, b, bar in zip(CHECKS, best, BARS, strict=True) if b > bar]
    detail = [f"{name} best {b:.2f} ms > {bar} ms" for name, b, bar in zip(CHECKS, best, BARS, strict=True) if b > bar]
    return failed, [*notes, "failed: " + ", ".join(detail)]


def _check(sim: ProcessSimulator, protocol: str, case: Case) -> None:
    failed, notes = _run_check(sim, protocol, case)
    print("timing:", "; ".join(notes))  # shown with -s / on failure: both sides' figures, every round
    if not failed:
        return
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    # Only the absolute sanity bars may be excused, and only off CI on an oversubscribed machine: the relative
    # bars hold under any load, and a client that fails them fails everywhere.
    if not (RELATIVE & set(failed)) and not in_ci() and load > 1.5 * cores:
        pytest.skip(f"machine oversubscribed (load {load:.1f} on {cores} cores), sanity bars not judged: {notes}")
    pytest.fail(f"client stamps later than a bare reader in the same round by more than {REL_P50_MS} ms at p50 "
                f"or {REL_P99_MS} ms at p99 (per chunk or first token), or beyond the sanity bars "
                f"{SANITY_P50_MS}/{SANITY_P99_MS} ms, in {ATTEMPTS} rounds (load {load:.1f} on {cores} cores): "
                + "; ".join(notes))


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


def _async_case(sim: ProcessSimulator, protocol: str) -> Case:
    backend = Backend(sim.url, protocol=protocol)  # type: ignore[arg-type]
    opts = Optimizations(connection_pool=True, fast_parse=True)

    async def once() -> list[StreamResult]:
        async with AsyncClient(backend, optimizations=opts) as client:
            return list(await asyncio.wait_for(asyncio.gather(*(client.run(r) for r in _requests(protocol))), 60))

    async def bare() -> Reads:
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

    return (lambda: in_loop(once())), (lambda: in_loop(bare()))


def _threaded_case(sim: ProcessSimulator) -> Case:
    backend = Backend(sim.url, protocol="ollama")

    def attempt() -> list[StreamResult]:
        with Client(backend, optimizations=Optimizations(connection_pool=True, fast_parse=True)) as client, \
                ThreadPoolExecutor(STREAMS) as pool:
            return list(pool.map(client.run, _requests("ollama"), timeout=60))

    def bare() -> Reads:
        def one(http: httpx.Client, req: Request) -> tuple[str, list[tuple[int, bytes]]]:
            path, body = _bare_request("ollama", req)
            blocks: list[tuple[int, bytes]] = []
            with http.stream("POST", sim.url + path, json=body, headers={"X-Request-Id": req.id}) as r:
                for block in r.iter_raw():
                    blocks.append((time.perf_counter_ns(), block))
            return req.id, blocks

        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=STREAMS)) as http, \
                ThreadPoolExecutor(STREAMS) as pool:
            return list(pool.map(lambda r: one(http, r), _requests("ollama"), timeout=60))

    return attempt, bare


def _case(sim: ProcessSimulator, kind: str) -> tuple[str, Case]:
    """(wire protocol, case) for "ollama" / "openai" (async client) or "threaded" (sync client, Ollama)."""
    return ("ollama", _threaded_case(sim)) if kind == "threaded" else (kind, _async_case(sim, kind))


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_async_16_streams_match_ground_truth(sim: ProcessSimulator, protocol: str) -> None:
    _check(sim, *_case(sim, protocol))


def test_threaded_16_streams_match_ground_truth(sim: ProcessSimulator) -> None:
    _check(sim, *_case(sim, "threaded"))


@pytest.mark.parametrize("kind", ["ollama", "openai", "threaded"])
def test_a_client_stamping_3_ms_late_fails(sim: ProcessSimulator, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bars must catch a client that stamps late: with every arrival stamp moved 3 ms later (the client's
    test-only hook), the check fails, and on the relative bars, which hold on any machine. The late stamps
    stay after the emit, so only the bars can catch them."""
    monkeypatch.setattr(stream_engine, "_TEST_ONLY_STAMP_DELAY_NS", 3 * MS)
    failed, notes = _run_check(sim, *_case(sim, kind), attempts=3)
    print("timing, 3 ms late:", "; ".join(notes))
    # p50 is the bar that catches it in every round: a median over ~800 chunks moves with the late stamp, and
    # not with a burst of noise on the bare reader's side (which can hide it at p99).
    assert "p50 - bare p50" in failed, f"a client stamping 3 ms late passed the relative p50 bar: {notes}"


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
    # p50 lies among the values it summarises, and no earlier than the server's true TTFT: in ms, not in s or ns
    truth_ms = [(sim.ground_truth(r.request_id).token_emit_ns[0] - r.sent_ns) / MS for r in results]
    assert max(min(truth_ms), base_ttft.min()) <= row["p50"] <= base_ttft.max()  # type: ignore[operator]
    s_itl = summarize(itl, metrics=("itl_ms",))
    assert s_itl["count"].sum() == itl.filter(~pl.col("warmup")).height
