"""Response bodies for the h11 transport (`_h11_transport.py`): the connection they read from, and the
framing of chunked and Content-Length bodies done here rather than by h11 (see `ChunkedBody` for why).

A body yields one bytes object per socket read, hands its connection back to the pool the moment the end
of the response is seen, and closes the connection when it ends any other way (failed, timed out,
cancelled, or closed before its end): a half-read connection is never reused.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any, Protocol

import h11
import httpx

__all__ = [
    "READ_SIZE",
    "ChunkedBody",
    "Conn",
    "H11Body",
    "LengthBody",
    "framing_of",
    "next_event",
    "read_some",
]

READ_SIZE = 64 * 1024


class Pool(Protocol):
    def _release(self, conn: Conn, *, reusable: bool) -> None: ...

    def _drop(self, conn: Conn, *, graceful: bool = False) -> None: ...


class Conn:
    """One TCP (or TLS) connection and its h11 state."""

    __slots__ = ("h11", "idle_since", "key", "reader", "writer")

    def __init__(
        self, key: tuple[str, str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
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


def next_event(h: h11.Connection, request: httpx.Request) -> Any:
    try:
        return h.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


async def read_some(conn: Conn, request: httpx.Request, timeout_s: float | None) -> bytes:
    try:
        if timeout_s is None:  # the workbench client's case: its own deadlines bound the stream
            return await conn.reader.read(READ_SIZE)
        async with asyncio.timeout(timeout_s):
            return await conn.reader.read(READ_SIZE)
    except builtins.TimeoutError:
        raise httpx.ReadTimeout("no data from the server within the read timeout", request=request) from None
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


def framing_of(
    request: httpx.Request, event: h11.Response, raw: list[tuple[bytes, bytes]]
) -> tuple[str, int, bool]:
    """How the response body is delimited: ("chunked", 0), ("length", n), or ("h11", 0) for the rare
    cases (no body by rule, read-until-close, HTTP/1.0) left to h11; and whether either side said
    `Connection: close` (h11's keep-alive rule). h11 has validated the framing headers already."""
    if request.method == "HEAD" or event.status_code in (204, 304) or event.http_version != b"1.1":
        return "h11", 0, False  # h11 frames these and keeps its own keep-alive state
    close = any(n.lower() == b"connection" and b"close" in v.lower() for n, v in request.headers.raw)
    framing, length = "h11", 0
    for name, value in raw:
        name = name.lower()
        if name == b"transfer-encoding":
            framing = "chunked"  # h11 accepts no transfer-coding but chunked
        elif name == b"content-length" and framing != "chunked":
            framing, length = "length", int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    return framing, length, close


class _BodyBase(httpx.AsyncByteStream):
    """A response body, one bytes object per socket read (all the body bytes that read held), so a caller
    stamping each item stamps what one read delivered. The connection goes back to the pool the moment
    the end of the response is seen, before the last bytes are handed out. A body failed, timed out or
    cancelled mid-way, or closed before its end, closes its connection: a half-read connection is never
    reused."""

    def __init__(self, pool: Pool, conn: Conn, request: httpx.Request, timeout_s: float | None) -> None:
        self._pool = pool
        self._conn: Conn | None = conn
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

    async def _next(self, conn: Conn) -> bytes:
        raise NotImplementedError

    def _ended(self, conn: Conn, *, reusable: bool, fresh_h11: bool = True) -> None:
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


class H11Body(_BodyBase):
    """Bodies h11 frames itself: read-until-close, HTTP/1.0, no body by rule."""

    async def _next(self, conn: Conn) -> bytes:
        h, request = conn.h11, self._request
        parts: list[bytes] = []
        while True:
            event = next_event(h, request)
            if event is h11.NEED_DATA:
                if parts:
                    return b"".join(parts)
                h.receive_data(await read_some(conn, request, self._timeout_s))
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


class LengthBody(_BodyBase):
    """A Content-Length body: hand on each read until `length` bytes came."""

    def __init__(
        self,
        pool: Pool,
        conn: Conn,
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

    async def _next(self, conn: Conn) -> bytes:
        if self._left == 0:
            self._ended(conn, reusable=self._keep and not self._first)
            raise StopAsyncIteration
        data, self._first = self._first, None
        if not data:
            data = await read_some(conn, self._request, self._timeout_s)
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


class ChunkedBody(_BodyBase):
    """A chunked body, de-chunked here rather than by h11: h11 costs ~14 us per chunk in Python (its
    event and state machinery), a quarter of the client's CPU at 256 streams of one-token chunks; this
    decoder costs a few microseconds per read. h11 still writes the request and parses the response head."""

    def __init__(
        self,
        pool: Pool,
        conn: Conn,
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

    async def _next(self, conn: Conn) -> bytes:
        if self._state == _SIZE and not self._buf:
            # the usual read on a token stream: exactly one whole chunk, taken without buffering
            data = await read_some(conn, self._request, self._timeout_s)
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
            data = await read_some(conn, self._request, self._timeout_s)
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
