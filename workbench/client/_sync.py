"""The synchronous client: `Client` and its `Stream`, over httpx, driven by the I/O-free `StreamCore`.

Reads are made interruptible by a thin wrapper around httpcore's network streams: while a stream is
being read, a blocked socket read wakes at least every `TICK_S` to check the stream's deadlines (first
token, idle, total) and an early cancel from another thread. httpcore reads its read timeout once per
response, so httpx alone cannot express deadlines that move as chunks arrive, or a cancel from outside.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpcore
import httpx
import orjson

from workbench._exceptions import CancelledError, ConfigError, ConnectError, ConnectTimeout, WorkbenchError
from workbench._types import Backend, ProtocolName, Request, StreamEvent, StreamResult, Timeouts
from workbench.client._shared import (
    ERROR_BODY_LIMIT,
    MODEL_PATHS,
    PROBES,
    Phase,
    StreamCore,
    as_backend,
    detect_error,
    httpx_timeout,
    map_error,
    models_from_response,
    pick_model,
    pool_limits,
    probe_result,
    request_headers,
    ssl_context,
    status_error,
    url_for,
)
from workbench.client._trace import ConnectionTrace
from workbench.optimizations import Optimizations
from workbench.protocols import build_request

if TYPE_CHECKING:
    from workbench.cache._client import CacheHook
    from workbench.cache.tiers import ResponseCache

__all__ = ["Client", "Stream", "make_transport"]

TICK_S = 0.05
_watch: ContextVar[StreamCore | None] = ContextVar("workbench_stream_watch", default=None)


class _Interrupted(Exception):
    """Raised inside httpcore's read to abandon it; httpcore then closes the connection."""

    def __init__(self, error: WorkbenchError) -> None:
        super().__init__(str(error))
        self.error = error


class _WatchedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        core = _watch.get()
        if core is None:
            return self._inner.read(max_bytes, timeout)
        limit = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.perf_counter_ns()
            err = core.interruption(now)
            if err is not None:
                raise _Interrupted(err)
            wait = TICK_S
            left = core.seconds_left(now)
            if left is not None:
                wait = min(wait, left + 0.001)
            if limit is not None:
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    raise httpcore.ReadTimeout("timed out")
                wait = min(wait, remaining)
            try:
                # never 0: a zero socket timeout means non-blocking, which fails differently
                return self._inner.read(max_bytes, max(wait, 0.001))
            except httpcore.ReadTimeout:
                if limit is not None and time.monotonic() >= limit:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _WatchedStream(self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _clamp(timeout: float | None) -> float | None:
    """Connect / TLS steps may not outlive the stream's own deadline (total, first token)."""
    core = _watch.get()
    left = None if core is None else core.seconds_left(time.perf_counter_ns())
    if left is None:
        return timeout
    return left if timeout is None else min(timeout, left)


class _WatchedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _clamp(timeout), local_address, socket_options)
        return _WatchedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _WatchedStream(self._inner.connect_unix_socket(path, _clamp(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def make_transport(backend: Backend, optimizations: Optimizations) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(
        verify=ssl_context(backend.verify),
        http2=optimizations.http2,
        limits=pool_limits(),
        retries=0,
    )
    pool = transport._pool
    # the one private hook we use: httpx has no public way to pass httpcore a network backend
    pool._network_backend = _WatchedBackend(pool._network_backend)
    return transport


class Client:
    """Streaming LLM client (Ollama or OpenAI-compatible) that records every chunk's arrival time.

    `connection_pool` keeps one httpx.Client (keep-alive) for the client's life; without it every request
    builds a new httpx.Client (new TCP/TLS connection), as a typical script does. Thread-safe.
    """

    def __init__(
        self,
        backend: Backend | str,
        *,
        optimizations: Optimizations | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.backend = as_backend(backend)
        self.optimizations = optimizations if optimizations is not None else Optimizations()
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self._transport = transport
        self._headers = dict(headers or {})
        self._protocol: ProtocolName | None = (
            None if self.backend.protocol == "auto" else self.backend.protocol
        )
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        self._detect_lock = threading.Lock()
        self._closed = False
        # `cache`: a ResponseCache answers repeats by replay; the hook lives in workbench.cache._client
        self.cache = cache
        self._cache_hook: CacheHook | None = None
        if cache is not None:
            from workbench.cache._client import hook_for

            self._cache_hook = hook_for(self, cache)

    def __repr__(self) -> str:
        proto = self._protocol or "auto"
        opts = self.optimizations.label()
        return f"Client({self.backend.url!r}, protocol={proto!r}, optimizations={opts!r})"

    # -- connections --

    def _new_http(self) -> httpx.Client:
        transport = self._transport
        if transport is None:
            transport = make_transport(self.backend, self.optimizations)
        return httpx.Client(transport=transport, timeout=httpx_timeout(self.timeouts))

    def _acquire(self) -> tuple[httpx.Client, bool]:
        """(client, owned): the pooled client, or a new one the caller must close.

        A transport passed in by the caller is never closed by us (it may be shared).
        """
        if self._closed:
            raise ConfigError("this Client is closed", hint="create a new Client")
        if not self.optimizations.connection_pool:
            return self._new_http(), self._transport is None
        with self._lock:
            if self._http is None:
                self._http = self._new_http()
            return self._http, False

    @property
    def protocol(self) -> ProtocolName:
        """The backend's protocol; asks the server once (GET /api/version, then /v1/models) when 'auto'."""
        if self._protocol is None:
            with self._detect_lock:
                if self._protocol is None:
                    self._protocol = self._detect()
        return self._protocol

    def _detect(self) -> ProtocolName:
        probes = PROBES[::-1] if self.backend.url.rstrip("/").endswith("/v1") else PROBES
        http, owned = self._acquire()
        seen: list[str] = []
        timeout = httpx.Timeout(10.0, connect=self.timeouts.connect)
        headers = request_headers(self.backend, None, self._headers)
        try:
            for proto, path in probes:
                url = url_for(self.backend, path)
                try:
                    resp = http.get(url, headers=headers, timeout=timeout)
                except httpx.HTTPError as exc:
                    err = map_error(exc, url=url, phase="response", timeouts=self.timeouts)
                    if isinstance(err, ConnectError | ConnectTimeout):
                        raise err from None
                    seen.append(f"GET {path}: {err.message}")
                    continue
                if probe_result(proto, resp.status_code, resp.content):
                    return proto
                seen.append(f"GET {path} -> HTTP {resp.status_code}")
        finally:
            if owned:
                http.close()
        raise detect_error(self.backend, seen)

    # -- models --

    def list_models(self) -> list[str]:
        """The model names the server lists, in its order (GET /api/tags on Ollama, /v1/models otherwise).

        Raises ConfigError if the server lists none, StatusError if it refuses, ConnectError if it is down.
        """
        path = MODEL_PATHS[self.protocol]
        url = url_for(self.backend, path)
        http, owned = self._acquire()
        try:
            resp = http.get(
                url,
                headers=request_headers(self.backend, None, self._headers),
                timeout=httpx.Timeout(30.0, connect=self.timeouts.connect),
            )
        except httpx.HTTPError as exc:
            raise map_error(exc, url=url, phase="response", timeouts=self.timeouts) from None
        finally:
            if owned:
                http.close()
        return models_from_response(self.protocol, resp, url)

    def default_model(self) -> str:
        """The model to use when none is named: the first the server lists (embedding models passed over)."""
        return pick_model(self.list_models())

    # -- requests --

    def stream(self, request: Request, *, headers: Mapping[str, str] | None = None) -> Stream:
        """A stream of events; the request is sent when iteration starts. Use as a context manager."""
        if self._cache_hook is not None:
            from workbench.cache._client import CachedStream

            return CachedStream(self, request, hook=self._cache_hook, headers=headers)
        return Stream(self, request, headers=headers)

    def run(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """Stream and drain; returns the result, or raises a WorkbenchError carrying `.result`."""
        with self.stream(request, headers=headers) as s:
            for _ in s:
                pass
        return s.result

    def complete(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """One non-streaming request (`stream: false`); the whole reply arrives as one chunk. With a cache, a
        hit is replayed; a miss is not stored (one chunk has no boundaries to replay to streaming callers)."""
        s: Stream
        if self._cache_hook is not None:
            from workbench.cache._client import CachedStream

            s = CachedStream(self, request, hook=self._cache_hook, headers=headers, streaming=False)
        else:
            s = Stream(self, request, headers=headers, streaming=False)
        with s:
            for _ in s:
                pass
        return s.result

    def close(self) -> None:
        self._closed = True
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """One request's events. Iterate it (TextDelta, and ReasoningDelta / ToolCallDelta / ChoiceDelta when the
    server sends reasoning, tool calls or several choices; UsageEvent, DoneEvent); `.result` once it ended.

    `cancel()` may be called from any thread. With `early_cancel` the connection is closed at once
    (within ~TICK_S even while a read is blocked); without it the rest is read to the end and counted
    as waste. Iterating a cancelled stream raises CancelledError carrying `.result`.
    """

    def __init__(
        self,
        client: Client,
        request: Request,
        *,
        headers: Mapping[str, str] | None = None,
        streaming: bool = True,
    ) -> None:
        self.request = request
        self._client = client
        self._headers = headers
        self._streaming = streaming
        self._core: StreamCore | None = None
        self._http: httpx.Client | None = None
        self._owned = False
        self._resp: httpx.Response | None = None
        self._raw: Iterator[bytes] | None = None
        self._pending: deque[StreamEvent] = deque()
        self._ended = False
        self._cancel_requested = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else ("open" if self._resp is not None else "new")
        return f"<Stream {self.request.id} {state}>"

    @property
    def result(self) -> StreamResult:
        if self._core is None or self._core.result is None:
            raise ConfigError(
                "the stream has not ended yet", hint="iterate it to the end (or use client.run) first"
            )
        return self._core.result

    def cancel(self) -> None:
        """Stop the stream; safe from any thread."""
        self._cancel_requested = True
        core = self._core
        if core is not None:
            core.cancel()

    # -- iteration --

    def __iter__(self) -> Iterator[StreamEvent]:
        # `for ev in stream` gets a generator: one resume per event instead of a Python-level __next__
        # call, a large share of the per-chunk cost on a fast stream. `next(stream)` still works.
        return self._iterate()

    def _iterate(self) -> Iterator[StreamEvent]:
        # events leave the queue as they are handed out, so a loop left early, `next(stream)` and a
        # second loop all continue from the same place
        pending = self._pending
        popleft = pending.popleft
        while True:
            while pending:
                yield popleft()
            if self._ended:
                return
            self._step()
            if not pending:
                return

    def __next__(self) -> StreamEvent:
        if self._pending:
            return self._pending.popleft()
        if self._ended:
            raise StopIteration
        self._step()
        if self._pending:
            return self._pending.popleft()
        raise StopIteration

    def _make_core(self) -> StreamCore:
        client = self._client
        try:
            protocol = client.protocol
        except WorkbenchError:
            self._ended = True
            raise
        core = StreamCore(
            self.request,
            backend=client.backend,
            protocol=protocol,
            optimizations=client.optimizations,
            timeouts=client.timeouts,
            streaming=self._streaming,
        )
        self._core = core
        if self._cancel_requested:
            core.cancel()
        return core

    def _step(self) -> None:
        """Read until there are events to hand out or the stream ended (result set, I/O closed)."""
        core = self._core if self._core is not None else self._make_core()
        token = _watch.set(core)
        try:
            if self._resp is None:
                if core.cancelled:
                    raise core.cancelled_error()
                self._open(core)
            raw = self._raw
            assert raw is not None
            while not self._pending:
                if core.pending_error is not None:
                    raise core.pending_error
                if core.cancelled and core.early_cancel:
                    raise core.cancelled_error()
                try:
                    data = next(raw)
                except StopIteration:
                    self._eof(core)
                    return
                t = time.perf_counter_ns()  # stamp first, parse after
                self._pending.extend(core.on_data(data, t))
                err = core.interruption(t)
                if err is not None:
                    raise err
        except BaseException as exc:
            self._fail(core, exc)
        finally:
            _watch.reset(token)

    def _open(self, core: StreamCore) -> None:
        client = self._client
        prepared = build_request(core.protocol, self.request, stream=self._streaming)
        url = url_for(client.backend, prepared.path)
        extra = {**client._headers, **(self._headers or {})}
        headers = request_headers(client.backend, self.request.id, extra)
        body = orjson.dumps(prepared.body)
        trace = ConnectionTrace()
        # stamped before a per-request httpx.Client is built, so the baseline pays for it, as users do
        core.stamp_sent()
        self._http, self._owned = client._acquire()
        req = self._http.build_request(
            prepared.method, url, content=body, headers=headers, extensions={"trace": trace}
        )
        resp = self._http.send(req, stream=True)
        self._resp = resp
        core.connected(connect_ms=trace.connect_ms, reused=trace.reused, http_version=resp.http_version)
        if resp.status_code >= 300:  # redirects are not followed: a moved API is a wrong URL to fix
            body_bytes = self._error_body(resp)
            raise status_error(
                resp.status_code,
                body_bytes,
                method=prepared.method,
                url=url,
                location=resp.headers.get("location"),
                retry_after=resp.headers.get("retry-after"),
            )
        # a response built with content= (mock transports) is already read; real ones stream
        self._raw = iter((resp.content,)) if resp.is_stream_consumed else resp.iter_raw()

    @staticmethod
    def _error_body(resp: httpx.Response) -> bytes:
        if resp.is_stream_consumed:
            return resp.content[:ERROR_BODY_LIMIT]
        buf = bytearray()
        for chunk in resp.iter_raw():
            buf += chunk
            if len(buf) >= ERROR_BODY_LIMIT:
                break
        return bytes(buf)

    def _eof(self, core: StreamCore) -> None:
        t = time.perf_counter_ns()
        self._pending.extend(core.on_eof(t))
        if core.pending_error is not None and not self._pending:
            raise core.pending_error
        if core.pending_error is not None:
            return  # hand out the events first; the next step raises the error
        self._ended = True
        self._close_io()
        if core.cancelled:
            err = core.cancelled_error()
            core.finish("cancelled", err, t)
            raise err
        core.finish("ok", None, t)

    def _fail(self, core: StreamCore, exc: BaseException) -> None:
        self._ended = True
        self._pending.clear()
        phase: Phase = "body" if self._raw is not None else "response"
        self._close_io()
        t = time.perf_counter_ns()  # after the close: wasted_ms_after_stop runs until the connection is gone
        if not isinstance(exc, Exception):
            # KeyboardInterrupt and friends: keep what we have as a cancelled result, then let it through
            core.cancel()
            core.finish("cancelled", core.cancelled_error(), t)
            raise exc
        if isinstance(exc, _Interrupted):
            cause: BaseException = exc.error
        elif isinstance(exc, httpx.TimeoutException):
            cause = core.interruption(t) or exc
        else:
            cause = exc
        if core.cancelled and not isinstance(cause, CancelledError):
            cause = core.cancelled_error()
        err = core.fail(cause, phase, t)
        if err is exc:
            raise err
        raise err from None

    def _close_io(self) -> None:
        resp, self._resp = self._resp, None
        self._raw = None
        http, self._http = self._http, None
        try:
            if resp is not None:
                resp.close()
        except (httpx.HTTPError, OSError, _Interrupted):
            pass
        finally:
            if http is not None and self._owned:
                http.close()

    # -- context manager --

    def close(self) -> None:
        """End the stream. An unfinished stream counts as cancelled (read to the end without early_cancel)."""
        if self._ended or self._core is None:
            self._ended = True
            return
        self.cancel()
        try:
            while not self._ended:
                self._pending.clear()
                self._step()
        except WorkbenchError:
            pass

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
