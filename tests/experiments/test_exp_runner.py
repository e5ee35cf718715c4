from __future__ import annotations

import asyncio
import threading
import time

import httpx
import polars as pl
import pytest

from workbench import Backend, Optimizations, TextDelta
from workbench.experiments import Rate, Workload, acompare, compare
from workbench.simulator import Profile, Simulator

POOLED = Optimizations(connection_pool=True, fast_parse=True)


def _backend(sim: Simulator) -> Backend:
    return Backend(sim.url, protocol="openai")


async def _bare_open_loop(url: str, n: int, rate: float, cap: int) -> float:
    """Reference: the same open-loop schedule driven by a bare httpx sender (no recorder, parser or runner).
    Returns the send rate it achieved; it shares the machine, and any stall of it, with the runner's attempt."""
    sem = asyncio.Semaphore(cap)
    sent: list[int] = []
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 2}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=cap)) as http:
        async def one() -> None:
            async with sem:
                sent.append(time.perf_counter_ns())
                async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    async for _ in r.aiter_raw():
                        pass

        t0 = time.perf_counter()
        tasks = []
        for k in range(n):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    sent.sort()
    return (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)


@pytest.mark.timing  # judged against a bare sender in the same run; `make test` runs it in a fresh interpreter
def test_open_loop_200_rps_delivers_the_rate_and_reports_schedule_lag(sim_process_url: str) -> None:
    """The runner's open loop keeps up with what a bare sender achieves on the same machine in the same run.

    An absolute bar (">= 194 req/s") judged the machine: a fresh clone at load 0.8 delivered 134-163 req/s.
    Each attempt measures the bare httpx sender and then the runner on the same schedule; the runner passes at
    the first attempt where it delivers at least 90% of the reference's rate (and, as a sanity bar, half the
    offered rate). A runner that adds its own lag fails every attempt."""
    wl = Workload.synthetic(500, input_tokens=4, output_tokens=2, seed=1)
    attempts = []
    for _ in range(3):
        reference = asyncio.run(_bare_open_loop(sim_process_url, 500, 200.0, 64))
        run = compare(wl, {"pooled": POOLED}, backend=Backend(sim_process_url, protocol="openai"), warmup=3,
                      arrival=Rate(200.0, max_concurrency=64), progress=False)
        f = run.measured
        assert f.height == 500
        assert (f["status"] == "ok").mean() >= 0.99  # type: ignore[operator]
        for col in ("scheduled_ms", "sent_lag_ms", "dispatch_lag_ms", "client_queue_ms"):
            assert f[col].null_count() == 0
        # the schedule is absolute: scheduled times are exactly k * 5 ms whatever the lag was
        assert f["scheduled_ms"].sort().diff().drop_nulls().mean() == pytest.approx(5.0, rel=1e-6)
        assert f["sent_lag_ms"].min() >= 0  # type: ignore[operator]
        sent = f["sent_ns"].sort()
        delivered = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
        assert run.throughput()["achieved_rate"][0] == pytest.approx(delivered)
        # the reported lag accounts for every send: send time = schedule + lag, so a shortfall in the rate
        # shows up as schedule lag, never hidden
        g = f.sort("sent_ns").select((pl.col("sent_ns") - pl.col("sent_ns").first()) / 1e6,
                                     pl.col("scheduled_ms") + pl.col("sent_lag_ms"))
        assert g["sent_ns"].to_list() == pytest.approx((g["scheduled_ms"] - g["scheduled_ms"][0]).to_list(), abs=1e-3)
        attempts.append((round(delivered, 1), round(reference, 1), round(float(f["sent_lag_ms"].quantile(0.99) or 0), 1)))
        if delivered >= 0.9 * min(reference, 200.0) and delivered >= 0.5 * 200:
            break
    print("timing: open loop (runner req/s, bare sender req/s, runner p99 schedule lag ms):", attempts)
    assert attempts[-1][0] >= 0.9 * min(attempts[-1][1], 200.0) and attempts[-1][0] >= 100.0, (
        f"(runner req/s, bare sender req/s, runner p99 schedule lag ms) per attempt: {attempts}")


def test_client_queue_is_reported_and_kept_out_of_ttft() -> None:
    # each request takes ~40 ms; at 100 req/s about 4 are wanted in flight, but only 2 slots exist
    with Simulator(Profile.instant(ttft_ms=30.0, token_delay_ms=5.0)) as sim:
        wl = Workload.synthetic(40, input_tokens=4, output_tokens=3, seed=2)
        run = compare(wl, {"capped": POOLED}, backend=_backend(sim), arrival=Rate(100.0, max_concurrency=2),
                      progress=False)
        f = run.measured
        # ground truth: the server's first token emit, on the same clock as the client's send stamp
        truth_ms = [(sim.ground_truth(rid).token_emit_ns[0] - sent) / 1e6
                    for rid, sent in zip(f["request_id"], f["sent_ns"], strict=True)]
    queue = f["client_queue_ms"]
    assert queue.max() > 50  # type: ignore[operator]
    assert queue.median() > 10  # type: ignore[operator]
    # TTFT is measured from the send, so the queue wait is not in it: TTFT over the server's true TTFT is the
    # delivery delay alone, well under the queue wait measured in the same run (a TTFT that counted the queue
    # would exceed the truth by at least the queue wait, in every row) ...
    excess = f["ttft_ms"] - pl.Series(truth_ms)
    assert excess.min() >= 0  # type: ignore[operator]
    assert excess.median() < 0.5 * queue.median(), (excess.median(), queue.median())  # type: ignore[operator]
    # ... but it is in the send lag against the schedule, and in TTFT counted from the schedule
    assert (f["sent_lag_ms"] >= f["client_queue_ms"]).all()
    assert f["ttft_from_schedule_ms"].quantile(0.99) > f["ttft_ms"].quantile(0.99) + 40  # type: ignore[operator]
    assert any("cap of 2 in flight was full" in w for w in run.warnings), run.warnings


def test_warmup_requests_run_first_are_marked_and_excluded(fast_sim: Simulator) -> None:
    wl = Workload.prompts("mixed", limit=4, max_tokens=3)
    run = compare(wl, {"a": POOLED, "b": Optimizations()}, backend=_backend(fast_sim), warmup=2, progress=False)
    f = run.frame
    assert f.height == 12
    warm = f.filter(pl.col("warmup"))
    assert warm.height == 4 and sorted(warm["variant"].to_list()) == ["a", "a", "b", "b"]
    assert set(warm["prompt_id"].to_list()) == {"warmup-0", "warmup-1"}
    assert warm["sent_ns"].max() < f.filter(~pl.col("warmup"))["sent_ns"].min()  # type: ignore[operator]
    s = run.summary(["ttft_ms"])
    assert s["count"].to_list() == [4, 4] and s["warmup_excluded"].to_list() == [2, 2]


def test_variants_are_interleaved_request_by_request(fast_sim: Simulator) -> None:
    wl = Workload.prompts("mixed", limit=6, max_tokens=2)
    run = compare(wl, {"a": POOLED, "b": POOLED, "c": POOLED}, backend=_backend(fast_sim), progress=False, seed=4)
    order = run.frame.sort("sent_ns").select("variant", "prompt_id").rows()
    for k in range(0, len(order), 3):
        block = order[k : k + 3]
        assert {v for v, _ in block} == {"a", "b", "c"} and len({p for _, p in block}) == 1
    assert {order[k][0] for k in range(0, len(order), 3)} != {"a"}  # not always the same variant first


def test_hooks_see_events_and_results(fast_sim: Simulator) -> None:
    events: list[tuple[str, str]] = []
    results: list[str] = []
    wl = Workload.prompts("mixed", limit=3, max_tokens=4)
    run = compare(
        wl,
        {"a": POOLED},
        backend=_backend(fast_sim),
        progress=False,
        on_event=lambda v, req, ev: events.append((v, req.id)) if isinstance(ev, TextDelta) else None,
        on_result=lambda v, res: results.append(res.request.id),
    )
    assert results == run.frame["request_id"].to_list()
    assert {rid for _, rid in events} == set(results)


def test_stop_ends_the_run_promptly() -> None:
    stop = threading.Event()
    stopped_at: list[float] = []
    with Simulator(Profile(ttft_ms=10.0, token_delay_ms=20.0, jitter=0.0)) as sim:
        wl = Workload.synthetic(40, input_tokens=4, output_tokens=100, seed=5)
        timer = threading.Timer(0.5, lambda: (stopped_at.append(time.perf_counter()), stop.set()))
        timer.start()
        t = time.perf_counter()
        # early_cancel: a stopped stream closes its connection at once (without it, the client reads to the end)
        run = compare(wl, {"a": POOLED.replace(early_cancel=True)}, backend=_backend(sim), arrival="concurrency=4",
                      stop=stop, progress=False)
        elapsed = time.perf_counter() - t
    # The bar is the server's own schedule, not the machine's speed: a stream of 100 tokens 20 ms apart cannot
    # end before ~2 s, however fast or loaded the machine is, so a run that waited for the 4 streams in flight
    # (or read them to the end) takes at least that long; a prompt stop returns soon after the 0.5 s stop.
    earliest_stream_end_s = (10.0 + 99 * 20.0) / 1000
    assert elapsed < earliest_stream_end_s, (
        f"run took {elapsed:.2f} s, {elapsed - (stopped_at[0] - t):.2f} s after stop; "
        f"a stream in flight ends at {earliest_stream_end_s:.2f} s at the earliest")
    assert run.frame.height <= 4
    assert set(run.frame["status"].to_list()) <= {"cancelled", "ok"}
    assert any("stopped early" in w for w in run.warnings)


async def test_acompare_with_asyncio_stop_event(fast_sim: Simulator) -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    def on_result(variant: str, res: object) -> None:
        seen.append(variant)
        if len(seen) == 3:
            stop.set()

    wl = Workload.prompts("mixed", limit=30, max_tokens=2)
    run = await acompare(wl, {"a": POOLED}, backend=_backend(fast_sim), stop=stop, on_result=on_result,
                         progress=False)
    assert 3 <= run.frame.height < 30


def test_warns_when_more_in_flight_than_the_pool_has_connections() -> None:
    from workbench.experiments import Concurrency
    from workbench.experiments._checks import pool_warning as _pool_warning

    assert _pool_warning(Concurrency(8), {"a": POOLED}) is None
    # the async client's HTTP/1.1 pool (the h11 transport) opens up to 1,024 connections
    msg = _pool_warning(Concurrency(2048), {"a": POOLED, "b": Optimizations()})
    assert msg is not None and "inside TTFT" in msg and "(a)" in msg
    assert _pool_warning(Rate(10, max_concurrency=5000), {"h2": POOLED.replace(http2=True)}) is None
