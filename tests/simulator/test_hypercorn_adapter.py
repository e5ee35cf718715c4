"""workbench.simulator._hypercorn_adapter against the installed hypercorn, through a real server.

The adapter walks hypercorn internals (no public way exists; the reason is in the module). These tests fail
with the name of what moved when a hypercorn upgrade breaks a step, instead of a client that hangs or a fault
that quietly closes a whole HTTP/2 connection.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from simwire_helpers import chat_body, ndjson

from workbench.simulator import Profile, Simulator
from workbench.simulator._hypercorn_adapter import drop_response, protocol_of
from workbench.simulator.app import abort_connection

HYPERCORN = importlib.metadata.version("hypercorn")
FAULT = {"X-Sim-Fault": "disconnect_after=3"}


def _record_aborts(sim: Simulator) -> list[tuple[str, str | None]]:
    """Swap the app's abort for one that notes which protocol the adapter found and what it did."""
    seen: list[tuple[str, str | None]] = []

    async def abort(send: Callable[[Any], Awaitable[None]]) -> None:
        found = protocol_of(send)
        if found is None:
            seen.append((f"no hypercorn stream/protocol behind send={send!r}", None))
            await abort_connection(send)  # what the app does then (raises)
            return
        seen.append((type(found[1]).__name__, await drop_response(send)))

    sim._app.abort = abort
    return seen


def test_http11_fault_closes_the_connection_through_hypercorn() -> None:
    with Simulator(Profile(ttft_ms=0, token_delay_ms=1, jitter=0)) as sim:
        seen = _record_aborts(sim)
        with httpx.Client(base_url=sim.url, timeout=10) as c, pytest.raises(httpx.RemoteProtocolError):
            c.post("/api/chat", json=chat_body(options={"num_predict": 20}), headers=FAULT)
    assert seen == [("H11Protocol", "connection closed")], (
        f"hypercorn {HYPERCORN}: the walk send.__self__ (HTTPStream) -> .send.__self__ (H11Protocol) or "
        f"H11Protocol.send(Closed()) changed; fix workbench/simulator/_hypercorn_adapter.py. Saw {seen}"
    )


def test_h2_fault_resets_only_its_stream_through_hypercorn() -> None:
    with Simulator(Profile(ttft_ms=0, token_delay_ms=5, jitter=0), tls=True, http2=True) as sim:
        seen = _record_aborts(sim)

        async def go() -> tuple[BaseException | httpx.Response, ...]:
            async with httpx.AsyncClient(http2=True, verify=sim.ssl_context(), base_url=sim.url) as c:
                body = chat_body(options={"num_predict": 20})
                bad = c.post("/api/chat", json=body, headers=FAULT)
                good = c.post("/api/chat", json=body)
                return tuple(await asyncio.gather(bad, good, return_exceptions=True))

        bad, good = asyncio.run(go())
    assert seen == [("H2Protocol", "h2 stream reset")], (
        f"hypercorn {HYPERCORN}: H2Protocol.stream_buffers / .connection.reset_stream / ._flush() or the walk "
        f"from send changed; fix workbench/simulator/_hypercorn_adapter.py. Saw {seen}"
    )
    assert isinstance(bad, httpx.RemoteProtocolError)
    assert isinstance(good, httpx.Response) and ndjson(good.content)[-1]["eval_count"] == 20


async def test_a_send_that_is_not_hypercorns_is_left_to_the_caller() -> None:
    async def send(message: Any) -> None:
        raise AssertionError("never called")

    assert protocol_of(send) is None
    assert await drop_response(send) is None
