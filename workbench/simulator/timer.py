"""A sub-millisecond timer for the simulator's event loop: one thread that wakes futures at their deadline.

asyncio's own timers wake through `epoll_wait`, whose timeout is whole milliseconds rounded up: a sleep
computed right after one chunk lands on a whole number of milliseconds (plus the write), so every gap between
chunks comes out quantized to ~1 ms and 0-2 ms late. For the latency model that is noise; for a trace replay,
whose purpose is to reproduce recorded gaps (llama.cpp's cluster tightly around one value), it moves medians
by several percent. This thread waits on a condition variable with a nanosecond timeout and then hands the
wake-up to the loop (`call_soon_threadsafe`), which measured 0.2-0.4 ms late at p50-p90 on 2 busy cores,
without quantization. It costs a thread switch per wake-up, so it serves replays and
`Profile(precise_timer=True)` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
from time import perf_counter_ns

__all__ = ["TimerHandle", "call_at_ns"]


class TimerHandle:
    __slots__ = ("active", "fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[bool]) -> None:
        self.loop, self.fut, self.active = loop, fut, True

    def cancel(self) -> None:
        self.active = False  # removed lazily when its deadline comes up


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class _TimerThread:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at_ns(
        self, deadline_ns: int, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[bool]
    ) -> TimerHandle:
        handle = TimerHandle(loop, fut)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-timer", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline_ns, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()  # an earlier deadline than the one the thread waits for
        return handle

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, handle = self._heap[0]
                now = perf_counter_ns()
                if deadline > now and handle.active:
                    self._cond.wait((deadline - now) / 1e9)
                    continue
                heapq.heappop(self._heap)
                if handle.active:
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        handle.loop.call_soon_threadsafe(_resolve, handle.fut)


_TIMER = _TimerThread()


def call_at_ns(deadline_ns: int, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[bool]) -> TimerHandle:
    """Resolve `fut` with False at `deadline_ns` (perf_counter_ns clock) on `loop`; `cancel()` to drop it."""
    return _TIMER.call_at_ns(deadline_ns, loop, fut)
