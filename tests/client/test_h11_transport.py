"""The h11 fast transport against servers we did not write: the stdlib's http.server (HTTP/1.1, chunked and
Content-Length bodies, keep-alive, closes) and hypercorn (the simulator, plain and TLS), plus one raw
socket that resets mid-body (no stock server can be told to). Connections are counted on the server side.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from client_sim_cases import FAULTS, T

from workbench import Backend, ConnectError, Optimizations, Request, TruncatedStreamError, WorkbenchError
from workbench.client import AsyncClient
from workbench.client._h11_transport import H11Transport, fast_async_transport
from workbench.client._shared import map_error
from workbench.simulator import Profile, Simulator

PIECES = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
BODY = b"".join(PIECES)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    peers: list[tuple[str, int]]
    gate: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-body is what some tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real API servers speak
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _fixed(self, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _chunked_head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.peers.append(self.client_address)
        path = self.path
        if path == "/length":
            self._fixed(BODY)
        elif path in ("/chunked", "/gated"):
            self._chunked_head()
            for i, piece in enumerate(PIECES):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if i == 0 and path == "/gated":
                    self.server.gate.wait(10)  # the client reads piece one, then acts, then opens the gate
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/odd":  # chunk extensions, a trailer, and every byte in its own write
            self._chunked_head()
            wire = b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\nworld, ok!\r\n0\r\nX-Trailer: 1\r\n\r\n"
            for i in range(len(wire)):
                self.wfile.write(wire[i : i + 1])
                self.wfile.flush()
        elif path == "/close":
            self._fixed(BODY, ("Connection", "close"))
            self.close_connection = True
        elif path == "/silent-close":  # keep-alive answer, then the server hangs up anyway
            self._fixed(BODY)
            self.close_connection = True
        elif path == "/until-close":  # no length, no chunking: the body ends when the connection does
            self.send_response(200)
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        elif path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"only ten b")
            self.close_connection = True
        elif path == "/nothing":
            self.close_connection = True  # close without a response
        else:
            self.send_error(404)

    def do_HEAD(self) -> None:
        self.server.peers.append(self.client_address)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))  # the length a GET would have: no body follows
        self.end_headers()

    def do_POST(self) -> None:
        self.server.peers.append(self.client_address)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._fixed(body[::-1])


@pytest.fixture(scope="module")
def stdlib() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.peers, server.gate = [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def base(stdlib: _Server) -> str:
    stdlib.peers.clear()
    stdlib.gate.clear()
    return f"http://127.0.0.1:{stdlib.server_address[1]}"


def connections(server: _Server) -> int:
    return len(set(server.peers))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fast_async_transport(), timeout=5.0) as client:
        yield client


def transport_of(client: httpx.AsyncClient) -> H11Transport:
    t = client._transport
    assert isinstance(t, H11Transport)
    return t


# ---- bodies, streaming, keep-alive ----


async def test_content_length_and_chunked_bodies_arrive_whole_on_one_connection(
    http: httpx.AsyncClient, base: str, stdlib: _Server
) -> None:
    for path in ("/length", "/chunked", "/length", "/chunked"):
        r = await http.get(base + path)
        assert (r.status_code, r.content, r.http_version) == (200, BODY, "HTTP/1.1")
    odd = await http.get(base + "/odd")
    assert odd.content == b"hello world, ok!"  # extensions and the trailer are framing, not body
    head = await http.head(base + "/length")
    assert (head.headers["content-length"], head.content) == (str(len(BODY)), b"")
    posted = await http.post(base + "/echo", content=b"abc" * 1000)
    assert posted.content == b"cba" * 1000
    assert connections(stdlib) == 1, stdlib.peers  # keep-alive reuse, the trailer case included


async def test_chunks_are_handed_out_as_they_arrive(
    http: httpx.AsyncClient, base: str, stdlib: _Server
) -> None:
    async with http.stream("GET", base + "/gated") as r:
        it = r.aiter_raw()
        first = await anext(it)
        assert first == PIECES[0]  # the server still holds the rest: this was not buffered to the end
        stdlib.gate.set()
        rest = b"".join([chunk async for chunk in it])
    assert first + rest == BODY


async def test_a_server_that_closes_after_a_response_costs_no_error(
    http: httpx.AsyncClient, base: str, stdlib: _Server
) -> None:
    for _ in range(3):
        assert (await http.get(base + "/close")).content == BODY
    for _ in range(3):
        assert (await http.get(base + "/silent-close")).content == BODY
        await asyncio.sleep(0.05)  # the server's FIN reaches the pool before the next request
    assert (await http.get(base + "/length")).content == BODY  # the pooled one is dead: found, not used
    assert (await http.get(base + "/until-close")).content == BODY  # rides the /length connection
    assert (await http.get(base + "/length")).content == BODY  # the body ended with it: a new one
    assert connections(stdlib) == 8


async def test_keepalive_limits_are_honoured(base: str, stdlib: _Server) -> None:
    expiring = httpx.Limits(keepalive_expiry=0.05)
    async with httpx.AsyncClient(transport=fast_async_transport(expiring), timeout=5.0) as http:
        await http.get(base + "/length")
        await http.get(base + "/length")  # within the expiry: reused
        await asyncio.sleep(0.1)
        await http.get(base + "/length")  # idle past the expiry: a new connection
    assert connections(stdlib) == 2
    stdlib.peers.clear()
    no_idle = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(transport=fast_async_transport(no_idle), timeout=5.0) as http:
        for _ in range(3):
            await http.get(base + "/length")
        assert transport_of(http)._n_open == 0
    assert connections(stdlib) == 3


async def test_connection_limit_queues_requests_and_pool_timeout_names_the_cap(
    base: str, stdlib: _Server
) -> None:
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(transport=fast_async_transport(limits), timeout=5.0) as http:
        got = await asyncio.gather(*(http.get(base + "/length") for _ in range(12)))
        assert all(r.content == BODY for r in got)
        assert connections(stdlib) <= 2
    one = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        transport=fast_async_transport(one), timeout=httpx.Timeout(5.0, pool=0.2)
    ) as http:
        async with http.stream("GET", base + "/gated"):
            with pytest.raises(httpx.PoolTimeout, match="1 connections in use"):
                await http.get(base + "/length")
            stdlib.gate.set()


# ---- unfinished bodies never go back to the pool ----


async def test_cancel_mid_body_closes_the_connection(
    http: httpx.AsyncClient, base: str, stdlib: _Server
) -> None:
    async with http.stream("GET", base + "/gated") as r:
        it = r.aiter_raw()
        assert await anext(it) == PIECES[0]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(it), 0.2)  # cancels the read inside the transport
        t = transport_of(http)
        assert (t._n_open, t._n_idle) == (0, 0)  # dropped at once, not parked for reuse
    stdlib.gate.set()
    assert (await http.get(base + "/length")).content == BODY
    assert connections(stdlib) == 2  # the next request did not ride the half-read connection


async def test_closing_a_response_early_does_not_reuse_its_connection(
    http: httpx.AsyncClient, base: str, stdlib: _Server
) -> None:
    async with http.stream("GET", base + "/gated") as r:
        async for _ in r.aiter_raw():
            break
    stdlib.gate.set()
    assert (await http.get(base + "/chunked")).content == BODY
    assert connections(stdlib) == 2
    assert transport_of(http)._n_open == 1


# ---- errors are httpx's, and the client's error boundary maps them ----


async def test_refused_connection_is_connect_error(http: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(httpx.ConnectError) as info:
            await http.get(f"http://127.0.0.1:{port}/")
    err = map_error(info.value, url="u", phase="response", timeouts=T)
    assert isinstance(err, ConnectError) and "is the server running" in err.message


async def test_short_body_and_no_response_are_remote_protocol_errors(
    http: httpx.AsyncClient, base: str
) -> None:
    with pytest.raises(httpx.RemoteProtocolError) as short:
        await http.get(base + "/short")
    assert isinstance(map_error(short.value, url="u", phase="body", timeouts=T), TruncatedStreamError)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await http.get(base + "/nothing")
    assert transport_of(http)._n_open == 0


async def test_reset_mid_body_is_read_error(http: httpx.AsyncClient) -> None:
    # no stock server resets on demand: accept, answer one chunk, then close with SO_LINGER 0 (a RST)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    chunk_read = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        chunk_read.wait(5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        async with http.stream("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/") as r:
            it = r.aiter_raw()
            assert await anext(it) == b"hello"
            chunk_read.set()
            with pytest.raises(httpx.ReadError) as info:
                await anext(it)
    finally:
        thread.join(5)
        listener.close()
    assert isinstance(map_error(info.value, url="u", phase="body", timeouts=T), TruncatedStreamError)
    assert transport_of(http)._n_open == 0


# ---- hypercorn: the simulator, through workbench's AsyncClient ----


@pytest.fixture(scope="module")
def tls_h1_sim() -> Iterator[Simulator]:
    with Simulator(Profile.instant(token_delay_ms=1.0, seed=3), tls=True, http2=False) as s:
        yield s


def chat(i: int = 0, n: int = 12) -> Request:
    return Request.chat("sim-small", f"Tell me about streaming {i}.", max_tokens=n)


async def test_workbench_client_streams_and_reuses_connections_on_hypercorn(sim: Simulator) -> None:
    before = sim.stats().connections
    opts = Optimizations(connection_pool=True, fast_parse=True)
    backend = Backend(sim.url, protocol="openai")
    async with AsyncClient(backend, optimizations=opts, transport=fast_async_transport()) as c:
        results = [await c.run(chat(i)) for i in range(4)]
        assert [r.metrics.connection_reused for r in results] == [False, True, True, True]
        assert results[0].metrics.connect_ms is not None and results[0].metrics.connect_ms > 0
        many = await asyncio.gather(*(c.run(chat(i)) for i in range(16)))
    assert sim.stats().connections - before <= 16  # 16 at once: at most one connection each, none per request
    async with AsyncClient(backend, optimizations=opts) as reference:  # httpx's own transport
        same = await reference.run(chat(0))
    assert results[0].text == same.text and results[0].metrics.output_tokens == 12
    assert all(r.ok and r.http_version == "HTTP/1.1" and r.metrics.output_tokens == 12 for r in many)


async def test_tls_on_hypercorn(tls_h1_sim: Simulator) -> None:
    # a transport handed to AsyncClient stays the caller's to close (an unclosed TLS connection held
    # hypercorn's shutdown 5 s)
    async with fast_async_transport(verify=tls_h1_sim.ssl_context()) as t:
        async with AsyncClient(tls_h1_sim.backend("openai"), transport=t) as c:
            r = await c.run(chat())
    assert r.ok and r.metrics.output_tokens == 12
    async with fast_async_transport(verify=True) as t:
        async with AsyncClient(tls_h1_sim.backend("openai"), transport=t) as c:
            with pytest.raises(ConnectError, match="TLS handshake") as info:  # the test CA is not a system CA
                await c.run(chat())
    assert "verify=" in (info.value.hint or "")


@pytest.mark.parametrize(("name", "fault", "kind", "budget", "partial"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_simulator_faults_end_in_the_same_typed_errors(
    sim: Simulator, name: str, fault: str, kind: type[WorkbenchError], budget: float, partial: bool
) -> None:
    async with (
        fast_async_transport() as transport,
        AsyncClient(Backend(sim.url, protocol="openai"), timeouts=T, transport=transport) as c,
    ):
        t0 = time.perf_counter()
        with pytest.raises(kind) as info:
            await c.run(chat(0, 40), headers={"X-Sim-Fault": fault})
        elapsed = time.perf_counter() - t0
        # a 503 answer, a stream cut short of its [DONE] and an error event may all end the HTTP response
        # cleanly (then the connection may be reused); a stream cut or abandoned mid-body never is
        if name not in ("error_status", "truncated", "error_mid_stream"):
            assert transport._n_idle == 0
    r = info.value.result
    assert type(info.value) is kind and r is not None and bool(r.text) == partial, (name, r and r.text)
    assert elapsed < budget, f"{name}: {elapsed:.2f}s > {budget}s"
