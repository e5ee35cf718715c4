from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from workbench._exceptions import IdleTimeout, StatusError
from workbench.cache.singleflight import Flight, FlightCancelled, SingleFlight


def test_16_threads_make_exactly_one_backend_call_and_all_get_the_stream() -> None:
    sf: SingleFlight[str] = SingleFlight()
    calls = 0
    calls_lock = threading.Lock()
    started = threading.Event()
    release = threading.Event()

    def backend() -> Iterator[str]:
        nonlocal calls
        with calls_lock:
            calls += 1
        started.set()
        release.wait(10)  # hold the flight open until every thread has joined
        for i in range(5):
            time.sleep(0.002)
            yield f"chunk{i}"

    results: dict[int, list[str]] = {}
    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait()
        results[n] = list(sf.stream("key", backend))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    assert started.wait(10)
    deadline = time.monotonic() + 10
    while sf.counters.get("followers") < 15 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == 1
    assert sf.counters.snapshot() == {"leaders": 1, "followers": 15}
    assert all(r == [f"chunk{i}" for i in range(5)] for r in results.values()) and len(results) == 16
    assert len(sf) == 0  # the flight left the registry


def test_followers_receive_events_as_they_arrive_not_at_the_end() -> None:
    flight: Flight[int] = Flight()
    got: list[tuple[int, float]] = []

    def follower() -> None:
        for ev in flight.follow(idle_timeout=5):
            got.append((ev, time.monotonic()))

    t = threading.Thread(target=follower)
    t.start()
    flight.publish(1)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.001)
    assert [g[0] for g in got] == [1]  # delivered while the flight is still running
    assert flight.state == "running"
    flight.publish(2)
    flight.finish("done")
    t.join(5)
    assert [g[0] for g in got] == [1, 2]


def test_leader_error_reaches_followers_as_the_same_error_type() -> None:
    sf: SingleFlight[str] = SingleFlight()
    gate = threading.Event()
    joined = threading.Event()

    def failing() -> Iterator[str]:
        yield "partial"
        gate.wait(5)
        raise StatusError("boom", status_code=503, server_message="overloaded")

    errors: list[BaseException] = []
    seen: list[list[str]] = []

    def follower() -> None:
        got: list[str] = []
        try:
            for ev in sf.stream("k", failing):
                got.append(ev)
                joined.set()
        except StatusError as exc:
            errors.append(exc)
        seen.append(got)

    leader_it = sf.stream("k", failing)
    assert next(leader_it) == "partial"
    t = threading.Thread(target=follower)
    t.start()
    assert joined.wait(5)
    gate.set()
    with pytest.raises(StatusError):
        next(leader_it)
    t.join(5)
    assert seen == [["partial"]]
    assert len(errors) == 1 and errors[0].status_code == 503  # type: ignore[attr-defined]
    assert isinstance(errors[0].__cause__, StatusError) and errors[0] is not errors[0].__cause__


def test_leader_cancel_makes_an_idle_follower_retry_as_leader() -> None:
    flight: Flight[str] = Flight()
    flight.fail(FlightCancelled(0), cancelled=True)
    with pytest.raises(FlightCancelled) as ei:
        list(flight.follow())
    assert ei.value.received == 0

    sf: SingleFlight[str] = SingleFlight()
    calls: list[int] = []

    def source() -> Iterator[str]:
        calls.append(1)
        yield "x"
        yield "y"

    is_leader, leader_flight = sf.join("k")  # a leader that will walk away before sending anything
    assert is_leader
    out: list[list[str]] = []
    t = threading.Thread(target=lambda: out.append(list(sf.stream("k", source))))
    t.start()
    deadline = time.monotonic() + 5
    while sf.counters.get("followers") < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    leader_flight.fail(FlightCancelled(0), cancelled=True)
    sf.leave("k", leader_flight)
    t.join(5)
    assert out == [["x", "y"]]  # the follower retried and led a call of its own
    assert calls == [1]
    assert sf.counters.snapshot() == {"leaders": 2, "followers": 1}


def test_leader_cancel_after_events_raises_in_follower() -> None:
    flight: Flight[str] = Flight()
    flight.publish("a")
    flight.fail(FlightCancelled(0), cancelled=True)
    got: list[str] = []
    with pytest.raises(FlightCancelled) as ei:
        for ev in flight.follow():
            got.append(ev)
    assert got == ["a"] and ei.value.received == 1


def test_follower_idle_timeout() -> None:
    flight: Flight[int] = Flight()
    with pytest.raises(IdleTimeout):
        list(flight.follow(idle_timeout=0.05))


async def test_async_flight_followers_get_events_live() -> None:
    sf: SingleFlight[str] = SingleFlight()
    leader, flight = sf.join("k")
    assert leader
    outs: list[list[str]] = []

    async def follow() -> None:
        is_leader, f = sf.join("k")
        assert not is_leader
        outs.append([ev async for ev in f.afollow(idle_timeout=5)])

    tasks = [asyncio.create_task(follow()) for _ in range(8)]
    await asyncio.sleep(0)
    for i in range(3):
        flight.publish(f"c{i}")
        await asyncio.sleep(0.001)
    flight.finish()
    sf.leave("k", flight)
    await asyncio.gather(*tasks)
    assert outs == [["c0", "c1", "c2"]] * 8
    assert sf.counters.snapshot() == {"leaders": 1, "followers": 8}
