"""The synchronous client: `Client`, and the network source its `Stream`s read (httpx, sync).

The stream itself is `workbench.stream.Stream`, the sync driver of the sans-I/O engine; a cache, when
set, is consulted through its gate first. Reads are interrupted (deadlines, early cancel) by the adapter
in `_httpcore_adapter`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx

from workbench._exceptions import WorkbenchError
from workbench._types import ProtocolName, Request, StreamResult
from workbench.client._httpcore_adapter import watched_transport
from workbench.client._shared import (
    MODEL_PATHS,
    ClientBase,
    SourceBase,
    transport_options,
)
from workbench.stream import Interrupted, Stream, StreamEngine

__all__ = ["Client"]


class Client(ClientBase[httpx.BaseTransport]):
    """Streaming LLM client (Ollama or OpenAI-compatible) that records every chunk's arrival time.

    `connection_pool` keeps one httpx.Client (keep-alive) for the client's life; without it every request
    builds a new httpx.Client (new TCP/TLS connection), as a typical script does. A cache toggle (or
    `cache=`) answers repeats from a `ResponseCache`. Thread-safe.
    """

    def _new_http(self) -> httpx.Client:
        transport = self._transport or watched_transport(
            **transport_options(self.backend, self.optimizations)
        )
        return httpx.Client(transport=transport, **self._http_options())

    def _get(self, path: str, timeout: float) -> httpx.Response:
        url, headers, limit = self._get_args(path, timeout)
        http, owned = self._acquire()
        try:
            with self._mapped_errors(url):
                return http.get(url, headers=headers, timeout=limit)  # type: ignore[no-any-return]
        finally:
            if owned:
                http.close()

    @property
    def protocol(self) -> ProtocolName:
        """The backend's protocol; asks the server once (GET /api/version, then /v1/models) when 'auto'.
        (`AsyncClient.protocol` cannot await: there it is None until `await detect_protocol()`.)"""
        return self.detect_protocol()

    def detect_protocol(self) -> ProtocolName:
        if self._protocol is None:
            with self._detect_lock:
                if self._protocol is None:
                    probe = self._probe()
                    while probe.path is not None:
                        try:
                            probe.answer(self._get(probe.path, 10.0))
                        except WorkbenchError as exc:
                            probe.answer(exc)
                    self._protocol = probe.result()
        return self._protocol

    def list_models(self) -> list[str]:
        """The model names the server lists, in its order (GET /api/tags on Ollama, /v1/models otherwise).
        Raises ConfigError if the server lists none, StatusError if it refuses, ConnectError if it is down."""
        return self._models(self.protocol, self._get(MODEL_PATHS[self.protocol], 30.0))

    def default_model(self) -> str:
        """The model to use when none is named: the first the server lists (embedding models passed over)."""
        return self._pick(self.list_models())

    def stream(
        self, request: Request, *, headers: Mapping[str, str] | None = None, streaming: bool = True
    ) -> Stream:
        """A stream of events; the request is sent when iteration starts. Use as a context manager."""
        starter = self._starter(request, lambda: NetworkSource(self, request, headers, streaming), streaming)
        starter.spec.detect = self.detect_protocol
        return Stream(request, starter)

    def run(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """Stream and drain; returns the result, or raises a WorkbenchError carrying `.result`."""
        with self.stream(request, headers=headers) as s:
            for _ in s:
                pass
        return s.result

    def complete(self, request: Request, *, headers: Mapping[str, str] | None = None) -> StreamResult:
        """One non-streaming request (`stream: false`); the whole reply arrives as one chunk. With a cache, a
        hit is replayed; a miss is not stored (one chunk has no boundaries to replay to streaming callers)."""
        with self.stream(request, headers=headers, streaming=False) as s:
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


class NetworkSource(SourceBase):
    """One HTTP exchange as a source: sends on `open`, hands over raw body reads, maps httpx errors."""

    _http: httpx.Client | None = None
    _raw: Iterator[bytes] | None = None

    def open(self, engine: StreamEngine) -> None:
        method, url, headers, body = self._begin(engine)
        try:
            self._http, self._owned = self._client._acquire()
            ext = {"trace": self._trace}
            req = self._http.build_request(method, url, content=body, headers=headers, extensions=ext)
            resp = self._resp = self._http.send(req, stream=True)
            if not self._answered(resp):
                raise self._refused(
                    resp, method, url, (resp.content,) if resp.is_stream_consumed else resp.iter_raw()
                )
        except httpx.HTTPError as exc:
            raise self._mapped(exc, "response") from None
        # a response built with content= (mock transports) is already read; real ones stream
        self._raw = iter((resp.content,)) if resp.is_stream_consumed else resp.iter_raw()

    def read(self) -> bytes | None:
        assert self._raw is not None
        try:
            return self._received(next(self._raw, None))
        except httpx.HTTPError as exc:
            raise self._mapped(exc, "body") from None

    def close(self) -> None:
        resp, self._resp, self._raw = self._resp, None, None
        http, self._http = self._http, None
        try:
            if resp is not None:
                resp.close()
        except (httpx.HTTPError, OSError, Interrupted):
            pass
        finally:
            if http is not None and self._owned:
                http.close()
