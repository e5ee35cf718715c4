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
(see `_ChunkedBody`); h11 still writes every request and parses every response head.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import h11
import httpx

__all__ = ["H11Transport", "fast_async_transport"]

T = TypeVar("T")
_Key = tuple[str, str, int]
_READ_SIZE = 64 * 1024
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


class _Conn:
    """One TCP (or TLS) connection and its h11 state."""

    __slots__ = ("h11", "idle_since", "key", "reader", "writer")

    def __init__(self, key: _Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def alive(self) -> bool:
        """Still usable for a next request: the loop has seen no EOF, error or close on it."""
        return not (self.reader.at_eof() or self.writer.is_closing() or self.reader.exception() is not None)

    def abort(self) -> None:
        """Drop the connection now, without flushing or a TLS close_notify (it is broken or half-read)."""
        self.writer.transport.abort()


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
        self._idle: dict[_Key, deque[_Conn]] = {}
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

    def _take_idle(self, key: _Key) -> _Conn | None:
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

    def _drop(self, conn: _Conn, *, graceful: bool = False) -> None:
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

    def _release(self, conn: _Conn, *, reusable: bool) -> None:
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
    ) -> _Conn:
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
    ) -> _Conn:
        scheme, host, port = key
        try:
            if trace is not None:
                await trace("connection.connect_tcp.started", {"host": host, "port": port})
            reader, writer = await _within(asyncio.open_connection(host, port, limit=_READ_SIZE), timeout_s)
            if trace is not None:
                await trace("connection.connect_tcp.complete", {"return_value": None})
            if scheme == "https":
                if trace is not None:
                    await trace("connection.start_tls.started", {"server_hostname": host})
                try:
                    await _within(writer.start_tls(self._ssl_context(), server_hostname=host), timeout_s)
                except BaseException:
                    writer.transport.abort()
                    raise
                if trace is not None:
                    await trace("connection.start_tls.complete", {"return_value": None})
        except builtins.TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError is an OSError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _Conn(key, reader, writer)

    # -- one request --

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the HTTP/1.1 transport speaks http and https, not {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key: _Key = (scheme, url.host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        trace: _Trace | None = request.extensions.get("trace")
        conn = await self._acquire(request, key, timeouts, trace)
        try:
            await self._send(conn, request, timeouts.get("write"))
            return await self._receive_head(conn, request, timeouts.get("read"))
        except BaseException:
            self._drop(conn)
            raise

    async def _send(self, conn: _Conn, request: httpx.Request, timeout_s: float | None) -> None:
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
                    if size >= _READ_SIZE:  # a large upload goes out as it comes
                        writer.write(b"".join(out))
                        out, size = [], 0
                        await _within(writer.drain(), timeout_s)
            out.append(h.send(h11.EndOfMessage()))
            writer.write(b"".join(out))
            await _within(writer.drain(), timeout_s)
        except builtins.TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    async def _receive_head(
        self, conn: _Conn, request: httpx.Request, timeout_s: float | None
    ) -> httpx.Response:
        h = conn.h11
        while True:
            event = _next_event(h, request)
            if event is h11.NEED_DATA:
                data = await _read(conn, request, timeout_s)
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
        framing, length = _framing(request, event)
        if framing == "h11":
            body = _H11Body(self, conn, request, timeout_s)
        else:
            leftover, eof = h.trailing_data
            keep = _keep_alive(request, event) and not eof
            if framing == "chunked":
                body = _ChunkedBody(self, conn, request, timeout_s, leftover, keep)
            else:
                body = _LengthBody(self, conn, request, timeout_s, leftover, keep, length)
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
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


def _next_event(h: h11.Connection, request: httpx.Request) -> Any:
    try:
        return h.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


async def _read(conn: _Conn, request: httpx.Request, timeout_s: float | None) -> bytes:
    try:
        if timeout_s is None:  # the workbench client's case: its own deadlines bound the stream
            return await conn.reader.read(_READ_SIZE)
        async with asyncio.timeout(timeout_s):
            return await conn.reader.read(_READ_SIZE)
    except builtins.TimeoutError:
        raise httpx.ReadTimeout("no data from the server within the read timeout", request=request) from None
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


def _framing(request: httpx.Request, event: h11.Response) -> tuple[str, int]:
    """How the response body is delimited: ("chunked", 0), ("length", n), or ("h11", 0) for the rare
    cases (no body by rule, read-until-close, HTTP/1.0) left to h11."""
    if request.method == "HEAD" or event.status_code in (204, 304) or event.http_version != b"1.1":
        return "h11", 0
    length = -1
    for name, value in event.headers:  # h11 gives names lower-cased and has validated the framing headers
        if name == b"transfer-encoding":
            return "chunked", 0  # h11 accepts no transfer-coding but chunked
        if name == b"content-length":
            length = int(value)
    return ("length", length) if length >= 0 else ("h11", 0)


def _keep_alive(request: httpx.Request, event: h11.Response) -> bool:
    """HTTP/1.1 keep-alive unless either side said `Connection: close` (h11's own rule)."""
    for name, value in request.headers.raw:
        if name.lower() == b"connection" and b"close" in value.lower():
            return False
    return not any(name == b"connection" and b"close" in value.lower() for name, value in event.headers)


class _BodyBase(httpx.AsyncByteStream):
    """A response body, one bytes object per socket read (all the body bytes that read held), so a caller
    stamping each item stamps what one read delivered. The connection goes back to the pool the moment
    the end of the response is seen, before the last bytes are handed out. A body failed, timed out or
    cancelled mid-way, or closed before its end, closes its connection: a half-read connection is never
    reused."""

    def __init__(
        self, pool: H11Transport, conn: _Conn, request: httpx.Request, timeout_s: float | None
    ) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
        self._request = request
        self._timeout_s = timeout_s

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            return await self._next(conn)
        except StopAsyncIteration:
            raise
        except BaseException:
            if self._conn is not None:
                self._conn = None
                self._pool._drop(conn)
            raise

    async def _next(self, conn: _Conn) -> bytes:
        raise NotImplementedError

    def _ended(self, conn: _Conn, *, reusable: bool, fresh_h11: bool = True) -> None:
        """The response is complete. A body framed here left h11 mid-response: a reused connection gets a
        new h11 state machine (h11's own bodies call start_next_cycle instead)."""
        self._conn = None
        if reusable and fresh_h11:
            conn.h11 = h11.Connection(h11.CLIENT)
        self._pool._release(conn, reusable=reusable)

    def _truncated(self, what: str) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({what})", request=self._request
        )

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # closed before the end of the response
            self._pool._drop(conn)


class _H11Body(_BodyBase):
    """Bodies h11 frames itself: read-until-close, HTTP/1.0, no body by rule."""

    async def _next(self, conn: _Conn) -> bytes:
        h, request = conn.h11, self._request
        parts: list[bytes] = []
        while True:
            event = _next_event(h, request)
            if event is h11.NEED_DATA:
                if parts:
                    return b"".join(parts)
                h.receive_data(await _read(conn, request, self._timeout_s))
            elif type(event) is h11.Data:
                parts.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                reusable = h.our_state is h11.DONE and h.their_state is h11.DONE
                if reusable:
                    h.start_next_cycle()
                self._ended(conn, reusable=reusable, fresh_h11=False)
                if parts:
                    return b"".join(parts)
                raise StopAsyncIteration
            else:  # ConnectionClosed mid-body: h11 raises on a short body, so this is unexpected
                raise httpx.RemoteProtocolError(f"unexpected {event!r} in the response body", request=request)


class _LengthBody(_BodyBase):
    """A Content-Length body: hand on each read until `length` bytes came."""

    def __init__(
        self,
        pool: H11Transport,
        conn: _Conn,
        request: httpx.Request,
        timeout_s: float | None,
        leftover: bytes,
        keep_alive: bool,
        length: int,
    ) -> None:
        super().__init__(pool, conn, request, timeout_s)
        self._first: bytes | None = leftover
        self._left = length
        self._keep = keep_alive

    async def _next(self, conn: _Conn) -> bytes:
        if self._left == 0:
            self._ended(conn, reusable=self._keep and not self._first)
            raise StopAsyncIteration
        data, self._first = self._first, None
        if not data:
            data = await _read(conn, self._request, self._timeout_s)
            if not data:
                raise self._truncated(f"{self._left} bytes missing")
        if len(data) >= self._left:
            extra = len(data) > self._left  # bytes past the body: the connection's framing is lost
            data = data[: self._left]
            self._left = 0
            self._ended(conn, reusable=self._keep and not extra)
        else:
            self._left -= len(data)
        return data


_SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)
_HEX = b"0123456789abcdefABCDEF"
_MAX_LINE = 64 * 1024


class _ChunkedBody(_BodyBase):
    """A chunked body, de-chunked here rather than by h11: h11 costs ~14 us per chunk in Python (its
    event and state machinery), a quarter of the client's CPU at 256 streams of one-token chunks; this
    decoder costs a few microseconds per read. h11 still writes the request and parses the response head."""

    def __init__(
        self,
        pool: H11Transport,
        conn: _Conn,
        request: httpx.Request,
        timeout_s: float | None,
        leftover: bytes,
        keep_alive: bool,
    ) -> None:
        super().__init__(pool, conn, request, timeout_s)
        self._buf = bytearray(leftover)
        self._state = _SIZE
        self._left = 0  # bytes of the current chunk still to come
        self._keep = keep_alive

    async def _next(self, conn: _Conn) -> bytes:
        if self._state == _SIZE and not self._buf:
            # the usual read on a token stream: exactly one whole chunk, taken without buffering
            data = await _read(conn, self._request, self._timeout_s)
            eol = data.find(b"\r\n")
            if eol > 0:
                start = eol + 2
                end = len(data) - 2
                head = data[:eol]
                if end > start and data[end:] == b"\r\n" and not head.strip(_HEX):
                    if int(head, 16) == end - start:
                        return data[start:end]
            if not data:
                raise self._truncated("incomplete chunked read")
            self._buf += data  # anything else: the general decoder below
        while True:
            out = self._decode()
            if self._state == _DONE:
                self._ended(conn, reusable=self._keep and not self._buf)
                if out:
                    return out
                raise StopAsyncIteration
            if out:
                return out
            data = await _read(conn, self._request, self._timeout_s)
            if not data:
                raise self._truncated("incomplete chunked read")
            self._buf += data

    def _decode(self) -> bytes:
        """Take every complete piece out of the buffer; the body bytes found, joined."""
        buf, pos, end = self._buf, 0, len(self._buf)
        parts: list[bytes] = []
        state = self._state
        while pos < end:
            if state == _DATA:
                take = min(self._left, end - pos)
                parts.append(bytes(buf[pos : pos + take]))
                pos += take
                self._left -= take
                if self._left:
                    break
                state = _CRLF
            elif state == _CRLF:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=self._request)
                pos += 2
                state = _SIZE
            else:  # _SIZE or _TRAILER: a line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_LINE:
                        raise httpx.RemoteProtocolError("chunk header too long", request=self._request)
                    break
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if state == _TRAILER:
                    if not line:
                        state = _DONE
                        break
                    continue  # trailer fields are not kept (httpx's own transport drops them too)
                size_text = line.split(b";", 1)[0].strip()
                if not size_text or size_text.strip(_HEX):
                    raise httpx.RemoteProtocolError(
                        f"bad chunk size line {line[:40]!r}", request=self._request
                    )
                self._left = int(size_text, 16)
                state = _DATA if self._left else _TRAILER
        del buf[:pos]
        self._state = state
        return b"".join(parts) if len(parts) != 1 else parts[0]
