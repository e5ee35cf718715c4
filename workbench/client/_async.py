"""The asyncio client: `AsyncClient`, and the network source its `AsyncStream`s read (httpx, async).

The stream itself is `workbench.stream.AsyncStream`, the async driver of the sans-I/O engine; it
interrupts a read (deadlines, early cancel) by rescheduling the `asyncio.timeout` it runs under.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx

from workbench._exceptions import WorkbenchError
from workbench._types import ProtocolName, Request, StreamResult
from workbench.client._h11_transport import fast_async_transport
from workbench.client._shared import (
    ERROR_BODY_LIMIT,
    MODEL_PATHS,
    ClientBase,
    SourceBase,
    transport_options,
)
from workbench.stream import AsyncStream, StreamEngine

__all__ = ["AsyncClient"]


class AsyncClient(ClientBase[httpx.AsyncBaseTransport]):
    """The asyncio form of `Client`: `await client.run(req)`, `async with client.stream(req) as s`."""

    _adetect_lock: asyncio.Lock | None = None  # made inside the event loop on first use

    def _new_http(self) -> httpx.AsyncClient:
        transport = self._transport or httpx.AsyncHTTPTransport(
            **transport_options(self.backend, self.optimizations)
        )
        return httpx.AsyncClient(transport=transport, **self._http_options())

    async def _get(self, path: str, timeout: float) -> httpx.Response:
        url, headers, limit = self._get_args(path, timeout)
        http, owned = self._acquire()
        try:
            with self._mapped_errors(url):
                return await http.get(url, headers=headers, timeout=limit)  # type: ignore[no-any-return]
        finally:
            if owned:
                await http.aclose()

    def _default_transport(self) -> httpx.AsyncBaseTransport:
        """HTTP/1.1: our h11 transport, because httpx's pool costs the event loop O(connections) per request
        and made the client, not the server, the limit from ~64 streams (benchmarks/concurrency_sweep.py:
        0.60-0.64x a bare reader at 64 streams, 0.07-0.13x at 128-256; the h11 transport 0.86-0.99x).
        HTTP/2 (multiplexed streams, which that transport does not speak): httpx's."""
        options = transport_options(self.backend, self.optimizations)
        if self.optimizations.http2:
            return httpx.AsyncHTTPTransport(**options)
        return fast_async_transport(options["limits"], verify=options["verify"])

    @property
    def protocol(self) -> ProtocolName | None:
        """The protocol, or None until `detect_protocol()` (or the first request) asked the server."""
        return self._protocol

    async def detect_protocol(self) -> ProtocolName:
        if self._protocol is None:
            if self._adetect_lock is None:
                self._adetect_lock = asyncio.Lock()
            async with self._adetect_lock:
                if self._protocol is None:
                    probe = self._probe()
                    while probe.path is not None:
                        try:
                            probe.answer(await self._get(probe.path, 10.0))
                        except WorkbenchError as exc:
                            probe.answer(exc)
                    self._protocol = probe.result()
        return self._protocol

    async def list_models(self) -> list[str]:
        """The model names the server lists, in its order (GET /api/tags on Ollama, /v1/models otherwise).
        Raises ConfigError if the server lists none, StatusError if it refuses, ConnectError if it is down."""
        protocol = await self.detect_protocol()
        return self._models(protocol, await self._get(MODEL_PATHS[protocol], 30.0))

    async def default_model(self) -> str:
        """The model to use when none is named: the first the server lists (embedding models passed over)."""
        return self._pick(await self.list_models())

    def stream(
        self, request: Request, *, headers: Mapping[str, str] | None = None, streaming: bool = True
    ) -> AsyncStream:
        starter = self._starter(
            request, lambda: AsyncNetworkSource(self, request, headers, streaming), streaming
        )
        starter.spec.adetect = self.detect_protocol
        return AsyncStream(request, starter)

    async def run(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        async with self.stream(request, headers=headers) as s:
            async for _ in s:
                pass
        return s.result

    async def complete(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """One non-streaming request (`stream: false`). With a cache: hits are replayed, misses not stored."""
        async with self.stream(request, headers=headers, streaming=False) as s:
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


class AsyncNetworkSource(SourceBase):
    """One HTTP exchange as an async source: sends on `aopen`, hands over body reads, maps httpx errors."""

    _http: httpx.AsyncClient | None = None
    _raw: AsyncIterator[bytes] | None = None

    async def aopen(self, engine: StreamEngine) -> None:
        method, url, headers, body = self._begin(engine)
        try:
            self._http, self._owned = self._client._acquire()
            ext = {"trace": self._trace.acall}
            req = self._http.build_request(method, url, content=body, headers=headers, extensions=ext)
            resp = self._resp = await self._http.send(req, stream=True)
            if not self._answered(resp):
                raise self._refused(resp, method, url, [b async for b in _body(resp)])
        except httpx.HTTPError as exc:
            raise self._mapped(exc, "response") from None
        # a response built with content= (mock transports) is already read; real ones stream
        self._raw = _one(resp.content) if resp.is_stream_consumed else resp.aiter_raw()

    async def aread(self) -> bytes | None:
        assert self._raw is not None
        try:
            return self._received(await anext(self._raw, None))
        except httpx.HTTPError as exc:
            raise self._mapped(exc, "body") from None

    async def aclose(self) -> None:
        resp, self._resp, self._raw = self._resp, None, None
        http, self._http = self._http, None
        try:
            if resp is not None:
                await resp.aclose()
        except (httpx.HTTPError, OSError):
            pass
        finally:
            if http is not None and self._owned:
                await http.aclose()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _body(resp: httpx.Response) -> AsyncIterator[bytes]:
    """An error answer's body, up to about ERROR_BODY_LIMIT (the rest is never read)."""
    if resp.is_stream_consumed:
        yield resp.content
        return
    n = 0
    async for chunk in resp.aiter_raw():
        yield chunk
        n += len(chunk)
        if n >= ERROR_BODY_LIMIT:
            return
