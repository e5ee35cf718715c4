"""Samples the client's own CPU and memory during a run, to tell when the client was the bottleneck.

CPU is sampled for the event-loop thread alone (from /proc via psutil), because an embedded simulator may
share the process: whole-process CPU would blame the client for the server's work.
"""

from __future__ import annotations

import threading
import time

import psutil

__all__ = ["Monitor"]


class Monitor:
    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._tid = 0
        self._loop: list[float] = []
        self._process: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_start = 0
        self.rss_end = 0

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _thread_cpu_s(self) -> float:
        for t in self._proc.threads():
            if t.id == self._tid:
                return float(t.user_time + t.system_time)
        return 0.0

    def start(self) -> None:
        """Call from the event-loop thread: that is the thread whose CPU is watched."""
        self._tid = threading.get_native_id()
        self.rss_start = self.rss()
        self._thread = threading.Thread(target=self._sample, name="workbench-monitor", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        last_wall = time.perf_counter()
        last_cpu = self._thread_cpu_s()
        self._proc.cpu_percent(None)
        while not self._stop.wait(self.interval_s):
            wall, cpu = time.perf_counter(), self._thread_cpu_s()
            if wall > last_wall:
                self._loop.append(100.0 * (cpu - last_cpu) / (wall - last_wall))
            self._process.append(float(self._proc.cpu_percent(None)))
            last_wall, last_cpu = wall, cpu

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.rss_end = self.rss()

    def loop_cpu_percent(self) -> list[float]:
        """Event-loop thread CPU, % of one core, one value per interval."""
        return list(self._loop)

    def process_cpu_percent(self) -> list[float]:
        return list(self._process)
