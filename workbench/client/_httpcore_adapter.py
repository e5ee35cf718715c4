"""The one reach into httpx/httpcore internals: interruptible sync reads.

httpcore reads its read timeout once per response, so httpx alone cannot express deadlines that move as
events arrive (idle, first token, total), or a cancel from another thread. This wraps httpcore's network
streams: while a stream is being read, a blocked socket read wakes at least every `TICK_S` to ask the
engine being driven (`workbench.stream.watching`) whether it must end, and raises `Interrupted` if so
(httpcore then closes that connection).

httpx has no public way to hand httpcore a network backend (`httpx.HTTPTransport` builds the
`httpcore.ConnectionPool` itself), so `watched_transport` swaps the pool's `_network_backend` after
construction. tests/client/test_httpcore_adapter.py fails loudly if an upgrade renames it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from workbench.stream import Interrupted, watching

__all__ = ["TICK_S", "watched_transport"]

TICK_S = 0.05


class _WatchedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        engine = watching.get()
        if engine is None:
            return self._inner.read(max_bytes, timeout)
        limit = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.perf_counter_ns()
            err = engine.interruption(now)
            if err is not None:
                raise Interrupted(err)
            wait = TICK_S
            left = engine.seconds_left(now)
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
    engine = watching.get()
    left = None if engine is None else engine.seconds_left(time.perf_counter_ns())
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


def watched_transport(**kwargs: Any) -> httpx.HTTPTransport:
    """`httpx.HTTPTransport(**kwargs)` whose reads can be interrupted by the stream being driven."""
    transport = httpx.HTTPTransport(**kwargs)
    pool = transport._pool
    if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
        raise RuntimeError(
            "httpx/httpcore changed: HTTPTransport._pool._network_backend is gone, so sync reads can no "
            f"longer be interrupted (httpx {httpx.__version__}, httpcore {httpcore.__version__}); "
            "update workbench/client/_httpcore_adapter.py"
        )
    pool._network_backend = _WatchedBackend(pool._network_backend)
    return transport
