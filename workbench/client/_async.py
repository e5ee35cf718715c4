"""The asyncio client: `AsyncClient` and its `AsyncStream`, the twin of `_sync` over the same `StreamCore`.

Every await on the network runs under an `asyncio.timeout` with no timer of its own; one watchdog timer
per stream, armed for the stream's next deadline, reschedules that timeout to now when a first-token,
idle or total limit has really passed (when it fires early because the idle deadline moved on as chunks
arrived, it re-arms itself). So a read costs no timer churn on the event loop, which matters with many
concurrent streams of small reads; `cancel()` (from another task or thread) ends the read the same way.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

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
    from workbench.cache._client import AsyncCacheHook
    from workbench.cache.tiers import ResponseCache

__all__ = ["AsyncClient", "AsyncStream", "make_async_transport"]

T = TypeVar("T")


class _Interrupted(Exception):
    def __init__(self, error: WorkbenchError) -> None:
        super().__init__(str(error))
        self.error = error


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def make_async_transport(backend: Backend, optimizations: Optimizations) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(
        verify=ssl_context(backend.verify), http2=optimizations.http2, limits=pool_limits(), retries=0
    )


class AsyncClient:
    """The asyncio twin of `Client`: `await client.run(req)`, `async with client.stream(req) as s`."""

    def __init__(
        self,
        backend: Backend | str,
        *,
        optimizations: Optimizations | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http: httpx.AsyncClient | None = None
        self._detect_lock: asyncio.Lock | None = None
        self._closed = False
        # `cache`: a ResponseCache answers repeats by replay; the hook lives in workbench.cache._client
        self.cache = cache
        self._cache_hook: AsyncCacheHook | None = None
        if cache is not None:
            from workbench.cache._client import async_hook_for

            self._cache_hook = async_hook_for(self, cache)

    def __repr__(self) -> str:
        proto = self._protocol or "auto"
        opts = self.optimizations.label()
        return f"AsyncClient({self.backend.url!r}, protocol={proto!r}, optimizations={opts!r})"

    def _new_http(self) -> httpx.AsyncClient:
        transport = self._transport
        if transport is None:
            transport = make_async_transport(self.backend, self.optimizations)
        return httpx.AsyncClient(transport=transport, timeout=httpx_timeout(self.timeouts))

    def _acquire(self) -> tuple[httpx.AsyncClient, bool]:
        if self._closed:
            raise ConfigError("this AsyncClient is closed", hint="create a new AsyncClient")
        if not self.optimizations.connection_pool:
            return self._new_http(), self._transport is None
        if self._http is None:  # no await between the check and the store: safe within one loop
            self._http = self._new_http()
        return self._http, False

    @property
    def protocol(self) -> ProtocolName | None:
        """The protocol, or None until `detect_protocol()` (or the first request) asked the server."""
        return self._protocol

    async def detect_protocol(self) -> ProtocolName:
        if self._protocol is None:
            if self._detect_lock is None:
                self._detect_lock = asyncio.Lock()
            async with self._detect_lock:
                if self._protocol is None:
                    self._protocol = await self._detect()
        return self._protocol

    async def _detect(self) -> ProtocolName:
        probes = PROBES[::-1] if self.backend.url.rstrip("/").endswith("/v1") else PROBES
        http, owned = self._acquire()
        seen: list[str] = []
        timeout = httpx.Timeout(10.0, connect=self.timeouts.connect)
        headers = request_headers(self.backend, None, self._headers)
        try:
            for proto, path in probes:
                url = url_for(self.backend, path)
                try:
                    resp = await http.get(url, headers=headers, timeout=timeout)
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
                await http.aclose()
        raise detect_error(self.backend, seen)

    async def list_models(self) -> list[str]:
        """The model names the server lists, in its order (GET /api/tags on Ollama, /v1/models otherwise).

        Raises ConfigError if the server lists none, StatusError if it refuses, ConnectError if it is down.
        """
        protocol = await self.detect_protocol()
        url = url_for(self.backend, MODEL_PATHS[protocol])
        http, owned = self._acquire()
        try:
            resp = await http.get(
                url,
                headers=request_headers(self.backend, None, self._headers),
                timeout=httpx.Timeout(30.0, connect=self.timeouts.connect),
            )
        except httpx.HTTPError as exc:
            raise map_error(exc, url=url, phase="response", timeouts=self.timeouts) from None
        finally:
            if owned:
                await http.aclose()
        return models_from_response(protocol, resp, url)

    async def default_model(self) -> str:
        """The model to use when none is named: the first the server lists (embedding models passed over)."""
        return pick_model(await self.list_models())

    def stream(self, request: Request, *, headers: Mapping[str, str] | None = None) -> AsyncStream:
        if self._cache_hook is not None:
            from workbench.cache._client import AsyncCachedStream

            return AsyncCachedStream(self, request, hook=self._cache_hook, headers=headers)
        return AsyncStream(self, request, headers=headers)

    async def run(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        async with self.stream(request, headers=headers) as s:
            async for _ in s:
                pass
        return s.result

    async def complete(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """One non-streaming request (`stream: false`). With a cache: hits are replayed, misses not stored."""
        s: AsyncStream
        if self._cache_hook is not None:
            from workbench.cache._client import AsyncCachedStream

            s = AsyncCachedStream(self, request, hook=self._cache_hook, headers=headers, streaming=False)
        else:
            s = AsyncStream(self, request, headers=headers, streaming=False)
        async with s:
            async for _ in s:
                pass
        return s.result

    async def aclose(self) -> None:
        self._closed = True
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncStream:
    """One request's events for `async for`; `.result` once it ended; `cancel()` from any task or thread."""

    def __init__(
        self,
        client: AsyncClient,
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
        self._http: httpx.AsyncClient | None = None
        self._owned = False
        self._resp: httpx.Response | None = None
        self._raw: AsyncIterator[bytes] | None = None
        self._pending: deque[StreamEvent] = deque()
        self._ended = False
        self._cancel_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout: asyncio.Timeout | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        state = "ended" if self._ended else ("open" if self._resp is not None else "new")
        return f"<AsyncStream {self.request.id} {state}>"

    @property
    def result(self) -> StreamResult:
        if self._core is None or self._core.result is None:
            raise ConfigError(
                "the stream has not ended yet", hint="iterate it to the end (or use client.run) first"
            )
        return self._core.result

    def cancel(self) -> None:
        """Stop the stream; safe from another task or another thread."""
        self._cancel_requested = True
        core = self._core
        if core is None or not core.cancel() or not core.early_cancel:
            return
        loop = self._loop
        if loop is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._interrupt_now()
        else:
            loop.call_soon_threadsafe(self._interrupt_now)

    def _interrupt_now(self) -> None:
        cm, loop = self._timeout, self._loop
        if cm is None or loop is None:
            return
        try:
            cm.reschedule(loop.time())
        except RuntimeError:
            pass  # the read just finished; the loop checks the cancel flag before the next one

    def _arm(self, core: StreamCore, now_ns: int) -> None:
        """Make sure the watchdog fires no later than the stream's next deadline (if it has one)."""
        left = core.seconds_left(now_ns)
        if left is None:
            return
        loop = self._loop
        assert loop is not None
        when = loop.time() + left + 0.001
        dog = self._watchdog
        if dog is not None:
            if dog.when() <= when:
                return  # it fires first and re-arms for whatever the deadline is then
            dog.cancel()  # the deadline moved earlier (the idle limit starts with the first byte)
        self._watchdog = loop.call_at(when, self._on_watchdog, core)

    def _on_watchdog(self, core: StreamCore) -> None:
        self._watchdog = None
        if core.result is not None:
            return
        now = time.perf_counter_ns()
        if core.interruption(now) is not None:
            self._interrupt_now()  # between reads, the next _guard finds the passed deadline itself
        else:
            self._arm(core, now)

    def _disarm(self) -> None:
        dog, self._watchdog = self._watchdog, None
        if dog is not None:
            dog.cancel()

    async def _guard(self, core: StreamCore, aw: Awaitable[T]) -> T:
        """Await one network step under the stream's deadlines (and early cancel)."""
        now = time.perf_counter_ns()
        err = core.interruption(now)
        if err is not None:
            close = getattr(aw, "close", None)
            if close is not None:
                close()  # never awaited: close it so no "was never awaited" warning fires
            raise _Interrupted(err)
        self._arm(core, now)
        try:
            async with asyncio.timeout(None) as cm:
                self._timeout = cm
                try:
                    return await aw
                finally:
                    self._timeout = None
        except builtins.TimeoutError as exc:
            if isinstance(exc, WorkbenchError):
                raise
            err = core.interruption(time.perf_counter_ns())
            if err is None:
                deadline = core.deadline()
                err = core.timeout_error(deadline[1] if deadline else "total")
            raise _Interrupted(err) from None

    # -- iteration --

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # `async for` gets an async generator: no new coroutine per event as `__anext__` makes
        return self._aiterate()

    async def _aiterate(self) -> AsyncIterator[StreamEvent]:
        # events leave the queue as they are handed out (no cleanup is needed when a loop is left
        # early, which an async generator would only run later, from the event loop)
        pending = self._pending
        popleft = pending.popleft
        while True:
            while pending:
                yield popleft()
            if self._ended:
                return
            await self._step()
            if not pending:
                return

    async def __anext__(self) -> StreamEvent:
        if self._pending:
            return self._pending.popleft()
        if self._ended:
            raise StopAsyncIteration
        await self._step()
        if self._pending:
            return self._pending.popleft()
        raise StopAsyncIteration

    async def _make_core(self) -> StreamCore:
        client = self._client
        try:
            protocol = await client.detect_protocol()
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
        self._loop = asyncio.get_running_loop()
        if self._cancel_requested:
            core.cancel()
        return core

    async def _step(self) -> None:
        core = self._core if self._core is not None else await self._make_core()
        try:
            if self._resp is None:
                if core.cancelled:
                    raise core.cancelled_error()
                await self._open(core)
            raw = self._raw
            assert raw is not None
            while not self._pending:
                if core.pending_error is not None:
                    raise core.pending_error
                if core.cancelled and core.early_cancel:
                    raise core.cancelled_error()
                try:
                    data = await self._guard(core, raw.__anext__())
                except StopAsyncIteration:
                    await self._eof(core)
                    return
                t = time.perf_counter_ns()  # stamp first, parse after
                self._pending.extend(core.on_data(data, t))
                err = core.interruption(t)
                if err is not None:
                    raise err
        except BaseException as exc:
            await self._fail(core, exc)

    async def _open(self, core: StreamCore) -> None:
        client = self._client
        prepared = build_request(core.protocol, self.request, stream=self._streaming)
        url = url_for(client.backend, prepared.path)
        extra = {**client._headers, **(self._headers or {})}
        headers = request_headers(client.backend, self.request.id, extra)
        body = orjson.dumps(prepared.body)
        trace = ConnectionTrace()
        core.stamp_sent()  # before a per-request client is built: the baseline pays for it, as users do
        self._http, self._owned = client._acquire()
        req = self._http.build_request(
            prepared.method, url, content=body, headers=headers, extensions={"trace": trace.acall}
        )
        resp = await self._guard(core, self._http.send(req, stream=True))
        self._resp = resp
        core.connected(connect_ms=trace.connect_ms, reused=trace.reused, http_version=resp.http_version)
        if resp.status_code >= 300:  # redirects are not followed: a moved API is a wrong URL to fix
            body_bytes = await self._guard(core, self._error_body(resp))
            raise status_error(
                resp.status_code,
                body_bytes,
                method=prepared.method,
                url=url,
                location=resp.headers.get("location"),
                retry_after=resp.headers.get("retry-after"),
            )
        # a response built with content= (mock transports) is already read; real ones stream
        self._raw = _one(resp.content) if resp.is_stream_consumed else resp.aiter_raw()

    @staticmethod
    async def _error_body(resp: httpx.Response) -> bytes:
        if resp.is_stream_consumed:
            return resp.content[:ERROR_BODY_LIMIT]
        buf = bytearray()
        async for chunk in resp.aiter_raw():
            buf += chunk
            if len(buf) >= ERROR_BODY_LIMIT:
                break
        return bytes(buf)

    async def _eof(self, core: StreamCore) -> None:
        t = time.perf_counter_ns()
        self._pending.extend(core.on_eof(t))
        if core.pending_error is not None and not self._pending:
            raise core.pending_error
        if core.pending_error is not None:
            return
        self._ended = True
        await self._close_io()
        if core.cancelled:
            err = core.cancelled_error()
            core.finish("cancelled", err, t)
            raise err
        core.finish("ok", None, t)

    async def _fail(self, core: StreamCore, exc: BaseException) -> None:
        self._ended = True
        self._pending.clear()
        if not isinstance(exc, Exception):
            # the caller's task was cancelled (or KeyboardInterrupt): keep a cancelled result, re-raise
            core.cancel()
            core.finish("cancelled", core.cancelled_error(), time.perf_counter_ns())
            await asyncio.shield(self._close_io())
            raise exc
        phase: Phase = "body" if self._raw is not None else "response"
        await self._close_io()
        t = time.perf_counter_ns()  # after the close: wasted_ms_after_stop runs until the connection is gone
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

    async def _close_io(self) -> None:
        self._disarm()
        resp, self._resp = self._resp, None
        self._raw = None
        http, self._http = self._http, None
        try:
            if resp is not None:
                await resp.aclose()
        except (httpx.HTTPError, OSError):
            pass
        finally:
            if http is not None and self._owned:
                await http.aclose()

    async def aclose(self) -> None:
        """End the stream. An unfinished stream counts as cancelled (read to the end without early_cancel)."""
        if self._ended or self._core is None:
            self._ended = True
            return
        self.cancel()
        try:
            while not self._ended:
                self._pending.clear()
                await self._step()
        except WorkbenchError:
            pass

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
