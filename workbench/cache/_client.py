"""The client hook: what `Client.stream()` / `AsyncClient.stream()` return when a `ResponseCache` is attached.

`CachedStream` / `AsyncCachedStream` subclass the client's `Stream` / `AsyncStream`, so
``client.stream(req)`` returns the same type with or without a cache. Each drives a `CacheRun` /
`AsyncCacheRun` (workbench.cache._run): bypass (sampled request, live, never stored), hit (replay), or miss
(live, stored on success, single-flight for concurrent identical misses). `complete()` goes through the
same run with ``streaming=False``: a hit is replayed, a miss is answered live and not stored. The client
itself changes only in two places: it keeps the hook (`hook_for`), and `stream()` / `complete()` return a
`CachedStream` when a cache is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from workbench._exceptions import ConfigError
from workbench._types import Request, StreamEvent, StreamResult, Timeouts
from workbench.cache._run import NOT_ENDED, AsyncCacheHook, AsyncCacheRun, CacheHook, CacheRun, LiveStream
from workbench.cache.key import backend_identity
from workbench.cache.tiers import ResponseCache
from workbench.client._async import AsyncClient, AsyncStream
from workbench.client._sync import Client, Stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = [
    "AsyncCacheHook",
    "AsyncCacheRun",
    "AsyncCachedStream",
    "CacheHook",
    "CacheRun",
    "CachedStream",
    "LiveStream",
    "async_hook_for",
    "hook_for",
]


# ---------------------------------------------------------------------------------------------------------
# the client's Stream types, served through the cache


def _follower_timeout(t: Timeouts) -> float | None:
    """How long a follower waits for the next event. The leader's own timeouts normally end a stalled
    flight (and followers get that error); this only guards against a leader whose caller walked away
    without closing its stream, so it is the longest wait the leader itself could be allowed."""
    if t.total is not None:
        return t.total + 1.0
    if t.first_token is None or t.idle is None:
        return None  # the leader may legitimately wait for ever; so may its followers
    return max(t.first_token, t.idle) + 1.0


def _identity(client: Client | AsyncClient, cache: ResponseCache) -> str:
    # keys name the server by its normalised URL (+ a credential hash when the cache asks), never its label
    return backend_identity(client.backend, credential=cache.key_by_credential, headers=client._headers)


def hook_for(client: Client, cache: ResponseCache) -> CacheHook:
    """The hook a `Client` keeps: keys use the backend's identity, results its label, replays the toggles."""
    return CacheHook(
        cache,
        backend=client.backend.label,
        identity=_identity(client, cache),
        protocol=lambda: client.protocol,
        optimizations=client.optimizations.as_dict(),
        idle_timeout=_follower_timeout(client.timeouts),
    )


def async_hook_for(client: AsyncClient, cache: ResponseCache) -> AsyncCacheHook:
    return AsyncCacheHook(
        cache,
        backend=client.backend.label,
        identity=_identity(client, cache),
        protocol=lambda: client.protocol,
        optimizations=client.optimizations.as_dict(),
        idle_timeout=_follower_timeout(client.timeouts),
    )


class CachedStream(Stream):
    """A `Stream` answered by the cache when it can (replay), else live (stored on success, single-flight)."""

    def __init__(
        self,
        client: Client,
        request: Request,
        *,
        hook: CacheHook,
        headers: Mapping[str, str] | None = None,
        streaming: bool = True,
    ) -> None:
        super().__init__(client, request, headers=headers, streaming=streaming)
        self.run = hook.open(
            request,
            lambda: Stream(client, request, headers=headers, streaming=streaming),
            store=streaming,  # a non-streamed answer has no chunk boundaries to replay: never stored
        )
        self._events: Iterator[StreamEvent] | None = None

    def __repr__(self) -> str:
        return f"<CachedStream {self.request.id} {self.run.role}>"

    @property
    def result(self) -> StreamResult:
        if self.run._result is None:
            raise ConfigError(NOT_ENDED, hint="iterate it to the end (or use client.run) first")
        return self.run._result

    def cancel(self) -> None:
        self.run.cancel()

    def __iter__(self) -> CachedStream:
        return self

    def __next__(self) -> StreamEvent:
        if self._events is None:
            self._events = iter(self.run)
        return next(self._events)

    def close(self) -> None:
        self.run.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncCachedStream(AsyncStream):
    """The `AsyncStream` twin of `CachedStream`."""

    def __init__(
        self,
        client: AsyncClient,
        request: Request,
        *,
        hook: AsyncCacheHook,
        headers: Mapping[str, str] | None = None,
        streaming: bool = True,
    ) -> None:
        super().__init__(client, request, headers=headers, streaming=streaming)
        self.run = hook.open(
            request,
            lambda: AsyncStream(client, request, headers=headers, streaming=streaming),
            store=streaming,
        )
        self._events: AsyncIterator[StreamEvent] | None = None

    def __repr__(self) -> str:
        return f"<AsyncCachedStream {self.request.id} {self.run.role}>"

    @property
    def result(self) -> StreamResult:
        if self.run._result is None:
            raise ConfigError(NOT_ENDED, hint="iterate it to the end (or use client.run) first")
        return self.run._result

    def cancel(self) -> None:
        self.run.cancel()

    def __aiter__(self) -> AsyncCachedStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._events is None:
            self._events = aiter(self.run)
        return await anext(self._events)

    async def aclose(self) -> None:
        await self.run.aclose()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
