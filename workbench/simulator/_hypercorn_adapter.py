"""The one place the simulator reaches into hypercorn's internals (written against hypercorn 0.17-0.18).

Why: a fault (`X-Sim-Fault: disconnect_after=N`) must drop a response with no end marker, and ASGI has no
message for that. Hypercorn has no public way either (read in hypercorn 0.18.0). Raising out of the app is
the nearest: hypercorn logs a traceback, answers 500 if the response has not started (a status, not a
drop), closes an HTTP/1.1 connection whose body is unfinished (`H11Protocol._maybe_recycle`; this module's
former note said 0.17 left it open), and on HTTP/2 forgets the stream without sending a frame
(`H2Protocol.stream_send(StreamClosed)`), so an HTTP/2 client would wait. So we walk from the ASGI `send`
(the bound `HTTPStream.app_send`) to the stream (`__self__`), from its `send` (the bound
`protocol.stream_send`) to the connection protocol (`__self__`), and then:
- HTTP/1.1: send the protocol hypercorn's own `Closed` event, which closes the socket;
- HTTP/2: reset just this stream (RST_STREAM, INTERNAL_ERROR) on the h2 connection and write it out with
  the protocol's private `_flush()`, so sibling streams on the connection live on.

tests/simulator/test_hypercorn_adapter.py drives both through a real hypercorn server and fails, naming
what moved, when a hypercorn upgrade breaks any step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from hypercorn.events import Closed
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream

__all__ = ["Dropped", "drop_response", "protocol_of"]

Dropped = Literal["h2 stream reset", "connection closed"]
_H2_INTERNAL_ERROR = 2


def protocol_of(send: Callable[..., Any]) -> tuple[HTTPStream, H11Protocol | H2Protocol] | None:
    """The hypercorn stream and connection protocol behind an ASGI `send`; None when `send` is not theirs."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, HTTPStream):
        return None
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    if not isinstance(protocol, H11Protocol | H2Protocol):
        return None
    return stream, protocol


async def drop_response(send: Callable[..., Any]) -> Dropped | None:
    """End the response behind `send` with no end marker; None when `send` is not hypercorn's (the caller
    then raises, which servers that close on app errors, e.g. uvicorn, turn into a dropped connection)."""
    found = protocol_of(send)
    if found is None:
        return None
    stream, protocol = found
    if isinstance(protocol, H2Protocol) and await _reset_h2_stream(protocol, stream.stream_id):
        return "h2 stream reset"
    await protocol.send(Closed())
    return "connection closed"


async def _reset_h2_stream(protocol: H2Protocol, stream_id: int) -> bool:
    try:
        buf = protocol.stream_buffers.get(stream_id)
        if buf is not None:
            await buf.drain()  # what was "sent" before the fault must reach the client first
        protocol.connection.reset_stream(stream_id, error_code=_H2_INTERNAL_ERROR)
        await protocol._flush()
    except Exception:  # the stream or connection closed meanwhile: closing the connection still ends it
        return False
    return True
