"""Helpers for the cache tests (a real redis-server process, results built through the Recorder).

Imported by tests as a plain module (`from _cache_helpers import ...`); the fixtures live in conftest.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench._types import DoneEvent, Request, StreamResult, TextDelta, Usage, UsageEvent
from workbench.metrics.recorder import Recorder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process on 127.0.0.1 with no persistence, in a temp dir. `stop()` is idempotent."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_redis(binary: str, workdir: Path) -> RedisServer:
    """Start redis-server on a free port and wait (bounded) until it answers PING."""
    import redis

    last: Exception | None = None
    for _ in range(3):  # the free port can be taken between probe and bind; try another
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(proc, port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5) as r:
                    if r.ping():
                        return server
            except redis.RedisError as exc:
                last = exc
                time.sleep(0.05)
        server.stop()
    raise RuntimeError(f"redis-server did not start: {last}")


MakeResult = Callable[..., StreamResult]


def build_result(
    request: Request,
    chunks: list[str] | None = None,
    *,
    gaps_ms: float = 0.0,
    status: str = "ok",
    completion_tokens: int | None = None,
    backend: str = "http://127.0.0.1:1",
) -> StreamResult:
    """A StreamResult made the way a client makes one (Recorder), with real stamps and optional gaps."""
    chunks = ["Hel", "lo", " wor", "ld"] if chunks is None else chunks
    rec = Recorder(request, backend=backend, protocol="ollama")
    rec.sent()
    for text in chunks:
        if gaps_ms:
            time.sleep(gaps_ms / 1000)
        t = time.perf_counter_ns()
        rec.received(len(text), t)
        rec.event(TextDelta(text, t))
    rec.event(UsageEvent(Usage(7, completion_tokens or len(chunks)), time.perf_counter_ns()))
    rec.event(DoneEvent("stop", {"eval_count": len(chunks)}, time.perf_counter_ns()))
    if status == "ok":
        return rec.finish("ok")
    return rec.finish("error" if status == "error" else "cancelled", error=RuntimeError(status))
