"""The toggles become parts in one place (`workbench.variant.build`): a client built from an `Optimizations`
gets what it asks for, and the one private reach (httpcore's network backend) is still where we expect it."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time

import httpcore
import pytest

from workbench import Backend, IdleTimeout, Optimizations, Request, Timeouts
from workbench._types import ProtocolName
from workbench.client import AsyncClient, Client
from workbench.client._httpcore_adapter import TICK_S, _WatchedBackend, watched_transport
from workbench.simulator import Simulator
from workbench.variant import build

PROTOCOLS = pytest.mark.parametrize("protocol", ["ollama", "openai"])


def ask() -> Request:
    return Request.chat("sim-small", "What does a cache keep?", max_tokens=8, temperature=0)


@PROTOCOLS
def test_a_client_built_with_exact_cache_answers_a_repeat_from_it(
    sim: Simulator, protocol: ProtocolName
) -> None:
    with Client(Backend(sim.url, protocol=protocol), optimizations=Optimizations(exact_cache=True)) as c:
        first, again = c.run(ask()), c.run(ask())
    assert c.cache is not None
    assert (first.cache, again.cache) == ("miss", "exact")
    assert again.text == first.text and again.chunk_texts() == first.chunk_texts()


@PROTOCOLS
async def test_an_async_client_built_with_exact_cache_answers_a_repeat_from_it(
    sim: Simulator, protocol: ProtocolName
) -> None:
    async with AsyncClient(
        Backend(sim.url, protocol=protocol), optimizations=Optimizations(exact_cache=True)
    ) as c:
        first, again = await c.run(ask()), await c.run(ask())
    assert (first.cache, again.cache) == ("miss", "exact") and again.text == first.text


def test_without_a_cache_toggle_there_is_no_cache(sim: Simulator) -> None:
    with Client(sim.url) as c:
        assert c.cache is None
        assert c.run(ask()).cache == "off" and c.run(ask()).cache == "off"


def test_build_says_what_each_toggle_becomes(tmp_path: os.PathLike[str]) -> None:
    parts = build(Optimizations(connection_pool=True, fast_parse=True, coalesce_ui=True, concurrency=4))
    assert parts.transport.pooled and parts.transport.fast_parse and not parts.transport.http2
    assert parts.view.coalesce and not parts.view.incremental
    assert parts.runner.concurrency == 4 and parts.cache is None
    named = build(Optimizations(disk_cache=True), disk_dir=tmp_path)
    assert named.cache is not None and named.disk_dir == str(tmp_path)
    temporary = build(Optimizations(disk_cache=True))
    folder = temporary.disk_dir
    assert folder is not None and os.path.isdir(folder)
    del temporary
    gc.collect()
    assert not os.path.exists(folder)  # a temporary disk tier goes with its cache


def test_the_httpcore_reach_is_where_the_adapter_expects_it() -> None:
    """Fails loudly when an httpx/httpcore upgrade moves the pool's network backend (the one private reach)."""
    transport = watched_transport(retries=0)
    assert isinstance(transport._pool._network_backend, _WatchedBackend)
    assert isinstance(transport._pool._network_backend._inner, httpcore.NetworkBackend)
    transport.close()


def test_a_sync_read_blocked_on_a_silent_server_is_interrupted_by_the_idle_deadline() -> None:
    """Through the adapter: headers and one token, then silence; the idle limit ends the blocked read."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        line = b'{"message":{"role":"assistant","content":"Hi"},"done":false}\n'
        conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        time.sleep(3)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    idle = 0.3
    t = Timeouts(connect=1.0, first_token=None, idle=idle, total=None)
    with Client(Backend(f"http://127.0.0.1:{port}", protocol="ollama"), timeouts=t) as c:
        t0 = time.perf_counter()
        with pytest.raises(IdleTimeout) as info:
            c.run(Request.chat("m", "hi"))
        waited = time.perf_counter() - t0
    srv.close()
    assert info.value.result is not None and info.value.result.text == "Hi"
    assert idle <= waited < idle + TICK_S + 1.0  # the limit we promised, plus one adapter tick and slack
