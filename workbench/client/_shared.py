"""I/O-free logic shared by the sync and async clients: URLs, headers, deadlines, one stream's state,
and the ONE place where httpx errors become workbench errors.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from typing import Literal

import httpx
import orjson

from workbench._exceptions import (
    EXCERPT_CHARS,
    CancelledError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    StatusError,
    StreamError,
    TimeoutError,
    TotalTimeout,
    TransportError,
    TruncatedStreamError,
    WorkbenchError,
    http_status_error,
)
from workbench._types import (
    Backend,
    ProtocolName,
    Request,
    Status,
    StreamEvent,
    StreamResult,
    TextDelta,
    Timeouts,
)
from workbench.metrics.recorder import Recorder
from workbench.optimizations import Optimizations
from workbench.protocols import Parser, make_parser, parse_completion, parse_error_body

__all__ = [
    "ERROR_BODY_LIMIT",
    "MODEL_PATHS",
    "PROBES",
    "Phase",
    "StreamCore",
    "as_backend",
    "base_url",
    "detect_error",
    "httpx_timeout",
    "map_error",
    "models_from_response",
    "parse_models",
    "pick_model",
    "pool_limits",
    "probe_result",
    "request_headers",
    "ssl_context",
    "status_error",
    "url_for",
]

ERROR_BODY_LIMIT = 64 * 1024
Phase = Literal["connect", "response", "body"]

# Test-only: added to every arrival stamp, so the timing checks
# (tests/integration/test_measurement_validity.py) can prove they fail a client that stamps late. They set
# it directly, or a whole run sets the environment variable:
# `WORKBENCH_TEST_ONLY_STAMP_DELAY_MS=3 pytest -m timing` must fail.
# 0 otherwise: one global load and test per network read, nothing more.
_TEST_ONLY_STAMP_DELAY_NS = round(float(os.environ.get("WORKBENCH_TEST_ONLY_STAMP_DELAY_MS") or 0) * 1e6)


def as_backend(backend: Backend | str) -> Backend:
    return Backend(backend) if isinstance(backend, str) else backend


def base_url(backend: Backend) -> str:
    """The server root. A trailing `/v1` is accepted (OpenAI-style base URLs, Ollama's /v1) and removed,
    because every path we send starts with `/api/` or `/v1/`."""
    url = backend.url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def url_for(backend: Backend, path: str) -> str:
    return base_url(backend) + path


def request_headers(
    backend: Backend, request_id: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    if extra:
        headers.update(extra)
    headers.update(backend.auth_headers())  # api_key (Bearer) or URL credentials (Basic)
    return headers


def ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """httpx 0.28 deprecates `verify=<path>`; a CA path becomes an SSLContext here."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def pool_limits() -> httpx.Limits:
    """Keep idle connections long enough to be reused across a notebook's requests.

    At most 100 connections: measured with benchmarks/concurrency_sweep.py, httpcore's pool costs CPU per
    connection per event, and 128-256 uncapped streams saturated the client's event loop (delivered tokens/s
    fell 2-4x below the capped pool). Requests beyond the cap wait inside httpx after the send stamp; the
    experiments runner warns when a run can exceed it (`pool_warning`). Keep-alive covers every connection
    the pool may open, so a wave of streams ending together does not close connections the next wave needs."""
    return httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0)


def httpx_timeout(timeouts: Timeouts) -> httpx.Timeout:
    """httpx enforces only the connect limit; reads are bounded by our deadlines (first token, idle, total),
    which move while the stream runs, something httpx's fixed per-read timeout cannot express."""
    return httpx.Timeout(connect=timeouts.connect, read=None, write=timeouts.connect, pool=timeouts.total)


# ---- protocol auto-detection ----

PROBES: tuple[tuple[ProtocolName, str], ...] = (("ollama", "/api/version"), ("openai", "/v1/models"))


def probe_result(protocol: ProtocolName, status: int, body: bytes) -> bool:
    if status != 200:
        return False
    text = body[:4096].lstrip()
    if protocol == "ollama":
        return text.startswith(b"{") and b'"version"' in text
    return text.startswith(b"{") and b'"data"' in text


# ---- model listing ----

MODEL_PATHS: dict[ProtocolName, str] = {"ollama": "/api/tags", "openai": "/v1/models"}


def models_from_response(protocol: ProtocolName, resp: httpx.Response, url: str) -> list[str]:
    """The answer to a model listing (GET MODEL_PATHS[protocol]): its names, or the StatusError it earned.
    One place for both clients, which differ only in how they send the GET."""
    if resp.status_code != 200:
        raise status_error(
            resp.status_code,
            resp.content,
            method="GET",
            url=url,
            retry_after=resp.headers.get("retry-after"),
        )
    return parse_models(protocol, resp.content, url)


def parse_models(protocol: ProtocolName, body: bytes, url: str) -> list[str]:
    """Model names, in the server's order, from Ollama's `{"models": [{"name": ...}]}` or OpenAI's
    `{"data": [{"id": ...}]}`. Raises ConfigError when the answer is not such a list or lists none."""
    key, field = ("models", ("name", "model")) if protocol == "ollama" else ("data", ("id",))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    entries = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"GET {url} did not answer with a model list ({key!r} missing): {parse_error_body(body, 120)!r}",
            hint="check the URL and --protocol, or name the model yourself (--model / Request(model=...))",
        )
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            name = next((entry[f] for f in field if isinstance(entry.get(f), str) and entry[f]), None)
            if name is not None:
                names.append(name)
    if not names:
        raise ConfigError(
            f"GET {url} lists no models: the server has none loaded or pulled",
            hint="pull or load a model on the server (e.g. `ollama pull llama3.2`), or name the model "
            "yourself (--model / Request(model=...))",
        )
    return names


def pick_model(names: list[str]) -> str:
    """The model used when none is named: the first the server lists, passing over embedding models
    (a name with "embed" in it), which cannot chat; the first of all if every one is such."""
    return next((n for n in names if "embed" not in n.lower()), names[0])


def detect_error(backend: Backend, seen: list[str]) -> ConfigError:
    return ConfigError(
        f"could not tell which protocol {base_url(backend)} speaks ({'; '.join(seen)})",
        hint="check the URL (the server root), or name the protocol: --protocol openai or ollama "
        "(Backend(url, protocol='openai'))",
    )


# ---- the error boundary ----


def map_error(exc: BaseException, *, url: str, phase: Phase, timeouts: Timeouts) -> WorkbenchError:
    """Every httpx / OS error becomes one workbench error here, with a message that says what to do."""
    if isinstance(exc, WorkbenchError):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(f"connecting to {url} took longer than {timeouts.connect} s")
    if isinstance(exc, httpx.PoolTimeout):
        return ConnectTimeout(f"no free connection to {url} within {timeouts.total} s")
    if isinstance(exc, httpx.ConnectError):
        if "CERTIFICATE" in detail.upper() or "SSL" in detail.upper():
            return ConnectError(
                f"TLS handshake with {url} failed: {detail}",
                hint="pass Backend(url, verify='/path/to/ca.pem') for a private CA, or check the certificate",
            )
        return ConnectError(f"could not connect to {url}: {detail}, is the server running?")
    if isinstance(exc, httpx.TimeoutException):
        return IdleTimeout(f"{url}: {detail}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(f"bad URL {url}: {detail}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        if phase == "body":
            return TruncatedStreamError(f"the connection to {url} broke before the stream ended: {detail}")
        return TransportError(f"{url} closed the connection before answering: {detail}")
    if isinstance(exc, httpx.HTTPError | OSError):
        return TransportError(f"talking to {url} failed: {detail}")
    return TransportError(f"talking to {url} failed unexpectedly: {type(exc).__name__}: {detail}")


def status_error(
    status: int,
    body: bytes,
    *,
    method: str,
    url: str,
    location: str | None = None,
    retry_after: str | None = None,
) -> StatusError:
    """The StatusError for an HTTP error answer; `http_status_error` names the likely cause of a bare one."""
    return http_status_error(
        status,
        method=method,
        url=url,
        body_text=body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace"),
        server_message=parse_error_body(body),
        location=location,
        retry_after=retry_after,
    )


# ---- one stream's I/O-free state ----


class StreamCore:
    """Recorder, parser, deadlines, cancel state and after-stop accounting for one request.

    The I/O twins call: `stamp_sent()`, `connected(...)`, `on_data(data, t_ns)` per network read (stamped
    before this call), `on_eof(t_ns)`, and `interruption(now_ns)` to learn whether a deadline passed or
    an early cancel wants the connection closed. `cancel()` may be called from any thread.
    """

    def __init__(
        self,
        request: Request,
        *,
        backend: Backend,
        protocol: ProtocolName,
        optimizations: Optimizations,
        timeouts: Timeouts,
        streaming: bool = True,
    ) -> None:
        self.request = request
        self.streaming = streaming
        self._body = bytearray()
        self.protocol: ProtocolName = protocol
        self.url = base_url(backend)
        self.timeouts = timeouts
        self.early_cancel = optimizations.early_cancel
        self.rec = Recorder(
            request, backend=backend.label, protocol=protocol, optimizations=optimizations.as_dict()
        )
        self.parser: Parser = make_parser(protocol, fast=optimizations.fast_parse)
        self.sent_ns = 0
        self.last_read_ns = 0
        self.body_started = False
        self.got_text = False
        self.cancel_ns: int | None = None
        self.pending_error: StreamError | None = None
        self.after_stop = {"chunks": 0, "chars": 0, "bytes": 0}
        self.result: StreamResult | None = None

    # -- lifecycle --

    def stamp_sent(self) -> None:
        self.sent_ns = self.rec.sent()
        self.last_read_ns = self.sent_ns

    def connected(self, *, connect_ms: float, reused: bool, http_version: str) -> None:
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

    # -- data --

    def on_data(self, data: bytes, t_ns: int) -> list[StreamEvent]:
        if _TEST_ONLY_STAMP_DELAY_NS:
            t_ns += _TEST_ONLY_STAMP_DELAY_NS
        self.last_read_ns = t_ns
        self.body_started = True
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
        return self._take(events)

    def on_eof(self, t_ns: int) -> list[StreamEvent]:
        if not self.streaming:
            return self._take(self._completion(t_ns))
        events = self._take(self.parser.flush(t_ns))
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

    def _take(self, events: list[StreamEvent]) -> list[StreamEvent]:
        if self.cancel_ns is not None:
            for ev in events:
                if isinstance(ev, TextDelta) and ev.text:
                    self.after_stop["chunks"] += 1
                    self.after_stop["chars"] += len(ev.text)
            return []
        rec = self.rec
        rec.events(events)
        if not self.got_text:
            self.got_text = rec.n_chunks > 0  # the recorder keeps exactly the text-bearing chunks
        return events

    # -- deadlines --

    def deadline(self) -> tuple[int, str] | None:
        """The next moment something must end the stream, and which limit it is."""
        t = self.timeouts
        best: tuple[int, str] | None = None
        candidates: list[tuple[int, str]] = []
        if t.total is not None:
            candidates.append((self.sent_ns + int(t.total * 1e9), "total"))
        if t.first_token is not None and not self.got_text:
            candidates.append((self.sent_ns + int(t.first_token * 1e9), "first_token"))
        if t.idle is not None and self.body_started:
            candidates.append((self.last_read_ns + int(t.idle * 1e9), "idle"))
        for c in candidates:
            if best is None or c[0] < best[0]:
                best = c
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
            return IdleTimeout(f"{self.url} sent nothing for idle={t.idle}s in the middle of the stream{got}")
        return TotalTimeout(f"the request to {self.url} took longer than total={t.total}s{got}")

    def cancelled_error(self) -> CancelledError:
        n = self.rec.n_chunks
        return CancelledError(f"the stream from {self.url} was stopped ({n} text chunks kept)")

    # -- results --

    def finish(
        self, status: Status, error: WorkbenchError | None = None, end_ns: int | None = None
    ) -> StreamResult:
        if self.result is not None:
            return self.result
        end = time.perf_counter_ns() if end_ns is None else end_ns
        result = self.rec.finish(status, error=error, end_ns=end)
        if self.cancel_ns is not None:
            result.wasted_ms_after_stop = max(0.0, (end - self.cancel_ns) / 1e6)
            # not server figures, but StreamResult has no field for them yet (see the client report)
            result.server["client_after_stop"] = dict(self.after_stop)
        self.result = result
        if error is not None:
            error.result = result
        return result

    def fail(self, exc: BaseException, phase: Phase, end_ns: int | None = None) -> WorkbenchError:
        """Map, attach the partial result, and hand back the error to raise."""
        err = map_error(exc, url=self.url, phase=phase, timeouts=self.timeouts)
        status: Status = "cancelled" if isinstance(err, CancelledError) else "error"
        self.finish(status, err, end_ns)
        return err
