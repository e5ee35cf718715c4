"""What the simulator really sent, per request: the reference the client's measurements are checked against.

Each chunk's emit time is `perf_counter_ns()` taken right before the write that carries it. Chunks that the
app writes in one batch (zero-delay mode, or chunks already overdue) share that batch's single stamp.
Written on the server's event loop, read from any thread: every access holds one lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["GroundTruth", "Ledger", "ServerStats"]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    request_id: str
    path: str = ""
    model: str = ""
    http_version: str = ""
    status: int = 0
    emit_ns: tuple[int, ...] = ()  # every chunk (SSE event / NDJSON line / whole body), in order
    token_emit_ns: tuple[int, ...] = ()  # chunks that carried text
    chunks_sent: int = 0
    disconnected: bool = False  # the client went away before the response ended
    disconnect_ns: int | None = None
    aborted: bool = False  # the server closed the connection on purpose (disconnect_after / shutdown)
    finished: bool = False  # the response ended (cleanly or not)
    queued_ms: float = 0.0
    load_ms: float = 0.0
    received_ns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    faults: tuple[str, ...] = ()


@dataclass(slots=True)
class _Live:
    """A request in flight: its record so far (replaced as fields change), the lists that grow per chunk."""

    truth: GroundTruth
    emit_ns: list[int] = field(default_factory=list)
    token_emit_ns: list[int] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def snapshot(self) -> GroundTruth:
        return replace(
            self.truth,
            emit_ns=tuple(self.emit_ns),
            token_emit_ns=tuple(self.token_emit_ns),
            chunks_sent=len(self.emit_ns),
            faults=tuple(self.faults),
        )


@dataclass(frozen=True, slots=True)
class ServerStats:
    connections: int  # distinct client (host, port) pairs seen
    requests: int
    http_versions: dict[str, int]
    active: int  # requests in flight


class Ledger:
    """Bounded store of ground truth (the newest `capacity` requests) plus server counters."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._cap = capacity
        self._records: OrderedDict[str, _Live] = OrderedDict()
        self._cond = threading.Condition()
        self._clients: set[tuple[str, int]] = set()
        self._requests = 0
        self._versions: Counter[str] = Counter()
        self._active = 0

    def count(self, client: tuple[str, int] | None, http_version: str) -> None:
        """Every HTTP request, recorded or not (GETs, 404s)."""
        with self._cond:
            if client is not None:
                self._clients.add(client)
            self._requests += 1
            self._versions[http_version] += 1

    def open(self, request_id: str, http_version: str, path: str) -> _Live:
        truth = GroundTruth(request_id, path, http_version=http_version, received_ns=time.perf_counter_ns())
        rec = _Live(truth)
        with self._cond:
            self._active += 1
            self._records[request_id] = rec
            self._records.move_to_end(request_id)
            while len(self._records) > self._cap:
                self._records.popitem(last=False)
        return rec

    def emit(self, rec: _Live, stamp: int, n: int, n_text: int) -> None:
        """n chunks written at `stamp`, the first n_text of them carrying text (in write order)."""
        with self._cond:
            rec.emit_ns.extend([stamp] * n)
            if n_text:
                rec.token_emit_ns.extend([stamp] * n_text)

    def mark_disconnect(self, rec: _Live, stamp: int) -> None:
        with self._cond:
            if not rec.truth.finished and not rec.truth.disconnected:
                rec.truth = replace(rec.truth, disconnected=True, disconnect_ns=stamp)
            self._cond.notify_all()

    def close(self, rec: _Live) -> None:
        with self._cond:
            if not rec.truth.finished:
                rec.truth = replace(rec.truth, finished=True)
                self._active -= 1
            self._cond.notify_all()

    def update(self, rec: _Live, **values: Any) -> None:
        with self._cond:
            rec.truth = replace(rec.truth, **values)

    def get(self, request_id: str) -> GroundTruth | None:
        with self._cond:
            rec = self._records.get(request_id)
            return rec.snapshot() if rec is not None else None

    def wait(self, request_id: str, timeout_s: float, *, disconnect: bool) -> bool:
        """Block until the request is disconnected (or, with disconnect=False, finished)."""

        def ready() -> bool:
            rec = self._records.get(request_id)
            if rec is None:
                return False
            return rec.truth.disconnected if disconnect else rec.truth.finished

        with self._cond:
            return self._cond.wait_for(ready, timeout=timeout_s)

    def stats(self) -> ServerStats:
        with self._cond:
            return ServerStats(len(self._clients), self._requests, dict(self._versions), self._active)
