"""The stream engine: one request's state machine, with no I/O (h11's `Connection` is the model).

Events go in, `StreamEvent`s and decisions come out:

* `sent(t_ns)` when the request leaves, `connected(...)` once the connection is known;
* `on_data(bytes, t_ns)` for every network read (stamped by the driver *before* this call), or
  `on_events(events, t_ns)` for a source that hands over parsed events (a cache replay, a single-flight
  follower): the chunk "arrives" when the source hands it over, and is recorded exactly as a read would be;
* `on_eof(t_ns)` at the end of the body, `cancel()` from any thread;
* `check(now_ns)` before every read: the error that must end the stream now (a parse error found after the
  events of the same read were handed out, an early cancel, a passed deadline), or None;
* `end(t_ns)` / `fail(error, t_ns)` produce the one `StreamResult`, from the one `Recorder`.

The drivers (`workbench.stream.drive`) do the waiting; the sources (network, replay, follower) do the I/O.

Deadlines measure progress, not bytes: `idle` runs from the last *event* (text, reasoning, a tool call,
usage, done), or from the response's first byte while none came yet. Keep-alive traffic (SSE comments,
NDJSON blank lines) therefore cannot hold a stalled stream open (issue 11); `first_token` and `total` run
from the send stamp.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from workbench._exceptions import (
    CancelledError,
    FirstTokenTimeout,
    IdleTimeout,
    StreamError,
    TimeoutError,
    TotalTimeout,
    TransportError,
    WorkbenchError,
)
from workbench._types import (
    CacheKind,
    ProtocolName,
    Request,
    Status,
    StreamEvent,
    StreamResult,
    TextDelta,
    Timeouts,
)
from workbench.metrics.recorder import Recorder
from workbench.protocols import DEFAULT_MAX_EVENT_BYTES, Parser, make_parser, parse_completion

__all__ = ["StreamEngine"]

# Test-only: added to every arrival stamp, so the timing checks
# (tests/integration/test_measurement_validity.py) can prove they fail a client that stamps late. They set
# it directly, or a whole run sets the environment variable:
# `WORKBENCH_TEST_ONLY_STAMP_DELAY_MS=3 pytest -m timing` must fail.
# 0 otherwise: one global load and test per network read, nothing more.
_TEST_ONLY_STAMP_DELAY_NS = round(float(os.environ.get("WORKBENCH_TEST_ONLY_STAMP_DELAY_MS") or 0) * 1e6)


def _restamped(ev: StreamEvent, t_ns: int) -> StreamEvent:
    """The event as it arrives here (every event type has `t_ns`: NamedTuples or dataclasses)."""
    if isinstance(ev, tuple):
        return ev._replace(t_ns=t_ns)
    return dataclasses.replace(ev, t_ns=t_ns)


class StreamEngine:
    """One request: recorder, parser, deadlines, cancel state, after-stop accounting, the result."""

    def __init__(
        self,
        request: Request,
        *,
        backend: str,
        url: str,
        protocol: ProtocolName,
        optimizations: Mapping[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        streaming: bool = True,
        early_cancel: bool = False,
        fast_parse: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.request = request
        self.url = url
        self.protocol: ProtocolName = protocol
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.streaming = streaming
        self.early_cancel = early_cancel
        self.rec = Recorder(request, backend=backend, protocol=protocol, optimizations=optimizations)
        self.parser: Parser = make_parser(protocol, fast=fast_parse, max_event_bytes=max_event_bytes)
        self._body = bytearray()
        self.parses = True  # False once a source hands over parsed events: the end is then the source's
        self.sent_ns = 0
        self.progress_ns = 0  # the last event (or the response's first byte): what `idle` measures from
        self.body_started = False
        self.got_text = False
        self.cancel_ns: int | None = None
        self.pending_error: StreamError | None = None
        self.after_stop = {"chunks": 0, "chars": 0, "bytes": 0}
        self.result: StreamResult | None = None
        self.cache_kind: CacheKind = "off"  # what the result's `cache` column says ("miss", "exact", ...)
        self.decorate: Callable[[StreamResult], None] | None = None  # a source's last word on the result

    # -- lifecycle --

    def sent(self, t_ns: int | None = None) -> None:
        self.sent_ns = self.rec.sent(t_ns)
        self.progress_ns = self.sent_ns

    def connected(self, *, connect_ms: float | None, reused: bool | None, http_version: str) -> None:
        self.rec.connection(connect_ms=connect_ms, reused=reused, http_version=http_version)

    def cancel(self) -> bool:
        """Thread-safe (one attribute store under the GIL). True if this call made the stop.

        A stream whose protocol end marker already arrived has nothing left to stop.
        """
        if self.cancel_ns is not None or self.result is not None or self.parser.done:
            return False
        self.cancel_ns = time.perf_counter_ns()
        return True

    @property
    def cancelled(self) -> bool:
        return self.cancel_ns is not None

    @property
    def ended(self) -> bool:
        return self.result is not None

    # -- data in --

    def on_data(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        """Bytes from the network, stamped on arrival; parsed here."""
        if _TEST_ONLY_STAMP_DELAY_NS:
            t_ns += _TEST_ONLY_STAMP_DELAY_NS
        if not self.body_started:
            self.body_started = True
            self.progress_ns = t_ns
        if self.cancel_ns is not None:
            self.after_stop["bytes"] += len(data)
        else:
            self.rec.received(len(data), t_ns)
        if not self.streaming:
            self._body += data
            return []
        events = self.parser.feed(data, t_ns)
        if self.parser.error is not None:
            self.pending_error = self.parser.error
        return self._take(events, t_ns)

    def on_events(self, events: list[StreamEvent], t_ns: int | None = None) -> list[StreamEvent]:
        """Parsed events handed over by a source (replay, follower): stamped now, as a read would be."""
        t = time.perf_counter_ns() if t_ns is None else t_ns
        self.parses = False
        self.body_started = True
        out = [_restamped(ev, t) for ev in events]
        if self.cancel_ns is None:
            for ev in out:
                if isinstance(ev, TextDelta):
                    self.rec.received(len(ev.text.encode()), t)
        return self._take(out, t)

    def on_eof(self, t_ns: int) -> list[StreamEvent]:
        if not self.parses:
            return []
        if not self.streaming:
            return self._take(self._completion(t_ns), t_ns)
        events = self._take(self.parser.flush(t_ns), t_ns)
        if self.parser.error is not None:
            self.pending_error = self.parser.error
        elif not self.parser.done:
            try:
                self.parser.close(t_ns)
            except StreamError as exc:
                self.pending_error = exc
        return events

    def _completion(self, t_ns: int) -> list[StreamEvent]:
        try:
            reply = parse_completion(self.protocol, bytes(self._body))
        except StreamError as exc:
            self.pending_error = exc
            return []
        return reply.events(t_ns)

    def _take(self, events: list[StreamEvent], t_ns: int) -> list[StreamEvent]:
        if not events:
            return events
        if self.cancel_ns is not None:
            for ev in events:
                if isinstance(ev, TextDelta) and ev.text:
                    self.after_stop["chunks"] += 1
                    self.after_stop["chars"] += len(ev.text)
            return []
        self.progress_ns = t_ns
        rec = self.rec
        rec.events(events)
        if not self.got_text:
            self.got_text = rec.n_chunks > 0  # the recorder keeps exactly the text-bearing chunks
        return events

    # -- decisions --

    def deadline(self) -> tuple[int, str] | None:
        """The next moment something must end the stream, and which limit it is."""
        t = self.timeouts
        best: tuple[int, str] | None = None
        if t.total is not None:
            best = (self.sent_ns + int(t.total * 1e9), "total")
        if t.first_token is not None and not self.got_text:
            c = (self.sent_ns + int(t.first_token * 1e9), "first_token")
            best = c if best is None or c[0] < best[0] else best
        if t.idle is not None and self.body_started:
            c = (self.progress_ns + int(t.idle * 1e9), "idle")
            best = c if best is None or c[0] < best[0] else best
        return best

    def interruption(self, now_ns: int) -> WorkbenchError | None:
        """The error that must end the stream now, if any (an early cancel or a passed deadline)."""
        if self.cancel_ns is not None and self.early_cancel:
            return self.cancelled_error()
        if self.sent_ns == 0:
            return None
        d = self.deadline()
        if d is not None and now_ns >= d[0]:
            return self.timeout_error(d[1])
        return None

    def check(self, now_ns: int) -> WorkbenchError | None:
        """What must end the stream before the next read: a held-back parse error, or an interruption."""
        if self.pending_error is not None:
            return self.pending_error
        return self.interruption(now_ns)

    def raise_held(self) -> None:
        """Before every read: raise a parse error held back until its read's events were handed out, or an
        early cancel. Deadlines are not computed here: the read itself is bounded by them (the sync adapter
        and the async guard), and `interruption` runs after every read; computing them again per read
        was work on the hot path."""
        if self.pending_error is not None:
            raise self.pending_error
        if self.cancel_ns is not None and self.early_cancel:
            raise self.cancelled_error()

    def seconds_left(self, now_ns: int) -> float | None:
        d = self.deadline() if self.sent_ns else None
        return None if d is None else max(0.0, (d[0] - now_ns) / 1e9)

    def timeout_error(self, kind: str) -> TimeoutError:
        t = self.timeouts
        n = self.rec.n_chunks
        got = f"; {n} text chunks received, kept on .result" if n else ""
        if kind == "first_token":
            return FirstTokenTimeout(f"no text from {self.url} within first_token={t.first_token}s{got}")
        if kind == "idle":
            return IdleTimeout(
                f"{self.url} sent no event (text, usage or end) for idle={t.idle}s in the middle of the "
                f"stream (keep-alive lines do not count){got}"
            )
        return TotalTimeout(f"the request to {self.url} took longer than total={t.total}s{got}")

    def cancelled_error(self) -> CancelledError:
        n = self.rec.n_chunks
        return CancelledError(f"the stream from {self.url} was stopped ({n} text chunks kept)")

    # -- results --

    def end(self, t_ns: int) -> WorkbenchError | None:
        """The body ended and its events were handed out: finish ok (or cancelled). Returns the error to
        raise, if the stream was stopped or a parse error is still held back."""
        if self.pending_error is not None:
            err: WorkbenchError = self.pending_error
            self.finish("error", err, t_ns)
            return err
        if self.cancel_ns is not None:
            err = self.cancelled_error()
            self.finish("cancelled", err, t_ns)
            return err
        self.finish("ok", None, t_ns)
        return None

    def finish(
        self, status: Status, error: WorkbenchError | None = None, end_ns: int | None = None
    ) -> StreamResult:
        if self.result is not None:
            if error is not None and error.result is None:
                error.result = self.result
            return self.result
        end = time.perf_counter_ns() if end_ns is None else end_ns
        result = self.rec.finish(status, error=error, end_ns=end)
        if self.cancel_ns is not None:
            result.wasted_ms_after_stop = max(0.0, (end - self.cancel_ns) / 1e6)
            # not server figures, but StreamResult has no field for them yet (see the client report)
            result.server["client_after_stop"] = dict(self.after_stop)
        if result.cache == "off":
            result.cache = self.cache_kind
        if self.decorate is not None:
            self.decorate(result)
        self.result = result
        if error is not None:
            error.result = result
        return result

    def fail(self, exc: BaseException, end_ns: int | None = None) -> WorkbenchError:
        """Attach the partial result to the error that ends the stream, and hand it back to raise.

        Sources map their own failures into the workbench tree (the network source at the one httpx
        boundary); anything else reaching here is a bug somewhere below, reported as a TransportError."""
        if isinstance(exc, WorkbenchError):
            err = exc
        else:
            what = f"{type(exc).__name__}: {exc or type(exc).__name__}"
            err = TransportError(f"talking to {self.url} failed unexpectedly: {what}")
        if self.cancel_ns is not None and not isinstance(err, CancelledError):
            err = self.cancelled_error()
        status: Status = "cancelled" if isinstance(err, CancelledError) else "error"
        self.finish(status, err, end_ns)
        return err
