"""A fast HTTP/1.1 transport for `AsyncClient`: h11 over asyncio streams, behind httpx's transport seam.

Why not httpx's default transport (httpcore) at 64+ concurrent streams: httpcore's `AsyncConnectionPool`
re-runs `_assign_requests_to_connections` on every request and every response close, and each run scans
every pooled connection (`is_idle`, and `has_expired`, which asks anyio's `extra_attributes` /
`getpeername` and polls the socket, per connection). The work per assignment grows with the number of
connections, so the total grows with its square. cProfile on the event-loop thread, `AsyncClient.run`
against the simulator in a child process (benchmarks/concurrency_sweep.py --profile 64,256: 32 tokens x
10 ms, 3 requests per stream, 2 cores):
  64 streams:  5.7 s profiled; 3.5 s cumulative in `_assign_requests_to_connections`, 3.8 M `is_idle`
               calls, 57 k `extra_attributes` + `getpeername` (1.0 s); delivered 0.21 of the reference reader.
  256 streams: 29.5 s profiled; 20.3 s in `_assign_requests_to_connections`, 15 M `is_idle` calls,
               295 k `getpeername` (6.9 s in `get_extra_info`); delivered 0.06 of the reference reader.
Here the pool is a deque of idle connections per origin: taking and returning one is O(1) whatever the
number of streams, and a connection's liveness is read from its StreamReader (EOF already seen by the
loop), not with a syscall. With that fixed, h11's per-chunk cost (~14 us a chunk, 26% of the loop's
profile at 256 streams) was the next largest, so chunked and Content-Length bodies are de-framed here
(see `_h11_body.ChunkedBody`); h11 still writes every request and parses every response head.

What it does: HTTP/1.1 only (keep httpx's own transport for HTTP/2 and for the sync client), keep-alive
with httpx.Limits' max_connections / max_keepalive_connections / keepalive_expiry, TLS through asyncio's
ssl, request timeouts from httpx's `timeout` extension (connect, write, read, pool), httpx's `trace`
extension for connection opening (so `ConnectionTrace` tells reused from new connections), and the
response body streamed as an `httpx.AsyncByteStream` yielding one bytes object per socket read. A body
left unfinished (closed early, cancelled, failed) closes its connection: only a connection whose response
was seen to end cleanly, with keep-alive, goes back to the pool. Errors are httpx's (ConnectError,
ConnectTimeout, ReadError, ReadTimeout, WriteError, RemoteProtocolError, PoolTimeout), so the client's
one error boundary (`_shared.map_error`) maps them unchanged. No proxies, no Unix sockets.
"""

from __future__ import annotations

import asyncio
import builtins
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import h11
import httpx

from workbench.client._h11_body import (
    READ_SIZE,
    ChunkedBody,
    Conn,
    H11Body,
    LengthBody,
    framing_of,
    next_event,
    read_some,
)

__all__ = ["H11Transport", "fast_async_transport"]

T = TypeVar("T")
_Key = tuple[str, str, int]
_Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def fast_async_transport(
    limits: httpx.Limits | None = None, *, verify: ssl.SSLContext | bool = True
) -> H11Transport:
    """The transport for `httpx.AsyncClient(transport=...)` / `AsyncClient(backend, transport=...)`.

    Whoever creates it closes it (`await transport.aclose()`, or `async with`): an httpx.AsyncClient
    closes its transport, but workbench's AsyncClient leaves a transport it was handed to its caller.

    `limits` as httpx's (None: httpx's defaults); `verify` True (system CAs), False, or an SSLContext."""
    return H11Transport(limits=limits if limits is not None else httpx.Limits(), verify=verify)


async def _within(aw: Awaitable[T], timeout_s: float | None) -> T:
    if timeout_s is None:
        return await aw
    async with asyncio.timeout(timeout_s):
        return await aw


class H11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with an O(1) idle-connection pool per (scheme, host, port)."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> None:
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        if isinstance(verify, ssl.SSLContext):
            self._ssl: ssl.SSLContext | None = verify
            self._ssl_lazy = False
        else:
            self._ssl = None
            self._ssl_lazy = verify  # True: system CAs, built on first https use; False: no checks
        self._idle: dict[_Key, deque[Conn]] = {}
        self._n_idle = 0
        self._n_open = 0  # idle + in use + being opened: what max_connections limits
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    # -- pool --

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._ssl_lazy:
                self._ssl = ssl.create_default_context()
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._ssl = ctx
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    def _take_idle(self, key: _Key) -> Conn | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # most recently used first: the least likely to have been closed by the server
            self._n_idle -= 1
            if conn.alive() and (self._expiry is None or now - conn.idle_since < self._expiry):
                return conn
            self._drop(conn)
        return None

    def _drop(self, conn: Conn, *, graceful: bool = False) -> None:
        """Close a connection that is not in the idle deques, and hand its slot to a waiter."""
        if graceful:
            conn.writer.close()
        else:
            conn.abort()
        self._n_open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _evict_idle_elsewhere(self) -> bool:
        """At the connection limit with idle connections to other origins: close one to make room."""
        if self._n_idle == 0:
            return False
        for idle in self._idle.values():  # one deque per origin: a handful, not one per connection
            if idle:
                conn = idle.popleft()  # the oldest
                self._n_idle -= 1
                self._drop(conn, graceful=True)
                return True
        return False

    def _release(self, conn: Conn, *, reusable: bool) -> None:
        """A response ended cleanly: keep the connection for the next request, if it may be kept and the
        limits allow. `conn.h11` must be ready for a next cycle when `reusable`."""
        if (
            not reusable
            or self._closed
            or not conn.alive()
            or (self._max_idle is not None and self._n_idle >= self._max_idle)
        ):
            self._drop(conn, graceful=True)
            return
        now = time.monotonic()
        conn.idle_since = now
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if self._expiry is not None:
            while idle and now - idle[0].idle_since >= self._expiry:  # expired ones sit at the left end
                self._n_idle -= 1
                self._drop(idle.popleft(), graceful=True)
        idle.append(conn)
        self._n_idle += 1
        self._wake()

    async def _acquire(
        self, request: httpx.Request, key: _Key, timeouts: dict[str, Any], trace: _Trace | None
    ) -> Conn:
        while True:
            if self._closed:
                raise httpx.ConnectError("the transport is closed", request=request)
            conn = self._take_idle(key)
            if conn is not None:
                return conn
            if self._max is None or self._n_open < self._max or self._evict_idle_elsewhere():
                self._n_open += 1
                try:
                    return await self._connect(request, key, timeouts.get("connect"), trace)
                except BaseException:
                    self._n_open -= 1
                    self._wake()
                    raise
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await _within(fut, timeouts.get("pool"))
            except builtins.TimeoutError:
                raise httpx.PoolTimeout(
                    f"no free connection within {timeouts.get('pool')} s ({self._max} connections in use)",
                    request=request,
                ) from None
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake()  # we were handed a slot but cannot use it: pass it on
                raise
            finally:
                fut.cancel()  # a no-op when done; a cancelled waiter is skipped by _wake

    async def _connect(
        self, request: httpx.Request, key: _Key, timeout_s: float | None, trace: _Trace | None
    ) -> Conn:
        scheme, host, port = key
        writer: asyncio.StreamWriter | None = None
        try:
            if trace is not None:
                await trace("connection.connect_tcp.started", {"host": host, "port": port})
            reader, opened = await _within(asyncio.open_connection(host, port, limit=READ_SIZE), timeout_s)
            writer = opened
            if trace is not None:
                await trace("connection.connect_tcp.complete", {"return_value": None})
            if scheme == "https":
                if trace is not None:
                    await trace("connection.start_tls.started", {"server_hostname": host})
                await _within(opened.start_tls(self._ssl_context(), server_hostname=host), timeout_s)
                if trace is not None:
                    await trace("connection.start_tls.complete", {"return_value": None})
        except BaseException as exc:
            if writer is not None:
                writer.transport.abort()  # opened, then failed or cancelled: it belongs to nobody
            if isinstance(exc, builtins.TimeoutError):
                raise httpx.ConnectTimeout(
                    f"connecting to {host}:{port} timed out", request=request
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS (gaierror), TLS (SSLError is an OSError)
                raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
            raise
        return Conn(key, reader, opened)

    # -- one request --

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the HTTP/1.1 transport speaks http and https, not {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key: _Key = (scheme, url.raw_host.decode("ascii"), port)  # IDNA-encoded, as DNS and SNI want it
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        trace: _Trace | None = request.extensions.get("trace")
        conn = await self._acquire(request, key, timeouts, trace)
        try:
            await self._send(conn, request, timeouts.get("write"))
            return await self._receive_head(conn, request, timeouts.get("read"))
        except BaseException:
            self._drop(conn)
            raise

    async def _send(self, conn: Conn, request: httpx.Request, timeout_s: float | None) -> None:
        """Write the request in as few socket writes as it takes: one for a usual API request. Head and
        body written apart cost two send() calls, and on loopback each send runs the receiver's TCP path
        too (~340 us a call in the profile at 16 streams): a second send was 30% of the client's CPU per
        request, and a wave of 64 requests queued behind it."""
        h, writer = conn.h11, conn.writer
        target = url_target(request.url)
        try:
            out = [h.send(h11.Request(method=request.method, target=target, headers=request.headers.raw))]
            size = len(out[0])
            assert isinstance(request.stream, httpx.AsyncByteStream)
            async for chunk in request.stream:
                if chunk:
                    out.append(h.send(h11.Data(data=chunk)))
                    size += len(out[-1])
                    if size >= READ_SIZE:  # a large upload goes out as it comes
                        writer.write(b"".join(out))
                        out, size = [], 0
                        await _within(writer.drain(), timeout_s)
            out.append(h.send(h11.EndOfMessage()))
            writer.write(b"".join(out))
            if writer.transport.get_write_buffer_size():  # else all of it is with the kernel already
                await _within(writer.drain(), timeout_s)
        except builtins.TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    async def _receive_head(
        self, conn: Conn, request: httpx.Request, timeout_s: float | None
    ) -> httpx.Response:
        h = conn.h11
        while True:
            event = next_event(h, request)
            if event is h11.NEED_DATA:
                data = await read_some(conn, request, timeout_s)
                if not data:  # say it plainly (h11 would name its state machine)
                    raise httpx.RemoteProtocolError(
                        "the server disconnected without sending a response", request=request
                    )
                h.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    raise httpx.RemoteProtocolError("the server switched protocols", request=request)
                continue  # 100 Continue and friends: the answer follows
            raise httpx.RemoteProtocolError(
                "the server disconnected without sending a response", request=request
            )
        body: httpx.AsyncByteStream
        raw = event.headers.raw_items()  # one list, read once here (h11's Headers iterate slowly)
        framing, length, close = framing_of(request, event, raw)
        if framing == "h11":
            body = H11Body(self, conn, request, timeout_s)
        else:
            leftover, eof = h.trailing_data
            keep = not (close or eof)
            if framing == "chunked":
                body = ChunkedBody(self, conn, request, timeout_s, leftover, keep)
            else:
                body = LengthBody(self, conn, request, timeout_s, leftover, keep, length)
        return httpx.Response(
            event.status_code,
            headers=raw,
            stream=body,
            extensions={"http_version": b"HTTP/" + event.http_version, "reason_phrase": event.reason},
        )

    async def aclose(self) -> None:
        """Close the idle connections; connections still streaming close when their body ends."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                self._n_idle -= 1
                self._drop(idle.popleft(), graceful=True)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)  # they wake, find the transport closed, and raise ConnectError
        self._waiters.clear()


def url_target(url: httpx.URL) -> bytes:
    """The request target: path and query, as sent on the request line."""
    return url.raw_path or b"/"
