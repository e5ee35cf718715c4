"""A misbehaving HTTP server on a raw socket, the cases it plays, and a harness that drives the public client.

Not our simulator: a plain `socket` server on 127.0.0.1 port 0, one thread per connection, where each case is a
short script of what to send and when (bytes, pauses, a reset). Nothing here goes through h11 or hypercorn on
the server side, so the client meets the framing errors, the keep-alive traffic and the wrong shapes exactly as
written. `run_case` drives `workbench.Client` / `workbench.AsyncClient` against one case and measures how it
ended: the exception (or the result), seconds, peak RSS growth (sampled, so an earlier test's high-water mark
does not hide it) and CPU seconds. A watchdog closes every server connection once a case is past its bound,
so a client that would hang forever fails its test instead of hanging the suite.

Shared by tests/adversarial/test_hostile.py and benchmarks/adversarial_table.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import psutil

from workbench import (
    AsyncClient,
    Backend,
    Client,
    IdleTimeout,
    MalformedStreamError,
    Optimizations,
    Request,
    StatusError,
    StreamError,
    TextDelta,
    Timeouts,
    TotalTimeout,
    TransportError,
    TruncatedStreamError,
    WorkbenchError,
)
from workbench import TimeoutError as WbTimeoutError

Protocol = Literal["ollama", "openai"]
Driver = Literal["sync", "async"]
PROTOCOLS: tuple[Protocol, ...] = ("ollama", "openai")
MB = 1 << 20

# Small limits so every case is quick; each case is judged against the one of these that should end it.
TIMEOUTS = Timeouts(connect=1.0, first_token=0.5, idle=0.5, total=3.0)
SLACK_S = 1.0  # "ends within its timeout + 1 s": what the client promises, not a speed bar
PARTIAL = "Hel"  # the text every case that sends tokens sends before it misbehaves


class _Stopped(Exception):
    """The server is shutting down (or the client went away): the script stops where it is."""


# ---- the wire: what a case script can do --------------------------------------------------------------


@dataclass
class Wire:
    sock: socket.socket
    protocol: Protocol
    stop: threading.Event
    request: bytes = b""
    sent: int = 0

    def send(self, data: bytes) -> None:
        if self.stop.is_set():
            raise _Stopped
        try:
            self.sock.sendall(data)
        except OSError as e:  # the client hung up: that is how most scripts end
            raise _Stopped from e
        self.sent += len(data)

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped

    def forever(self) -> None:
        """Keep the connection open and silent until the server stops."""
        self.stop.wait()
        raise _Stopped

    def head(self, status: int = 200, headers: dict[str, str] | None = None, *, chunked: bool = True) -> None:
        ctype = "application/x-ndjson" if self.protocol == "ollama" else "text/event-stream"
        h = {"Content-Type": ctype, "Connection": "close"}
        if chunked:
            h["Transfer-Encoding"] = "chunked"
        h.update(headers or {})
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 302: "Found"}
        lines = [f"HTTP/1.1 {status} {reason.get(status, 'Whatever')}"] + [f"{k}: {v}" for k, v in h.items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def chunk(self, data: bytes) -> None:
        if data:
            self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunks(self) -> None:
        self.send(b"0\r\n\r\n")

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, as a crashing proxy does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        raise _Stopped


# ---- protocol pieces ------------------------------------------------------------------------------------


def token(protocol: Protocol, text: str | object = PARTIAL) -> bytes:
    if protocol == "ollama":
        return json.dumps({"model": "m", "message": {"role": "assistant", "content": text}, "done": False}).encode() + b"\n"
    chunk = {"id": "x", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def finish(protocol: Protocol) -> bytes:
    if protocol == "ollama":
        done = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                "done_reason": "stop", "eval_count": 2, "prompt_eval_count": 4}
        return json.dumps(done).encode() + b"\n"
    last = {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    return b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"


def keepalive(protocol: Protocol) -> bytes:
    return b"\n" if protocol == "ollama" else b": ping\n\n"


def full_stream(protocol: Protocol) -> bytes:
    return token(protocol) + token(protocol, "lo") + finish(protocol)


# ---- the server -----------------------------------------------------------------------------------------


Script = Callable[[Wire], None]


class HostileServer:
    """Serves `script` to every connection (after reading the request) until closed."""

    def __init__(self, script: Script, protocol: Protocol) -> None:
        self.script, self.protocol = script, protocol
        self.stop = threading.Event()
        self.wires: list[Wire] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._accept = threading.Thread(target=self._serve, name="hostile-accept", daemon=True)
        self._accept.start()

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(w.sent for w in self.wires)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(None)
            wire = Wire(conn, self.protocol, self.stop)
            with self._lock:
                self.wires.append(wire)
            t = threading.Thread(target=self._handle, args=(wire,), name="hostile-conn", daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, wire: Wire) -> None:
        try:
            wire.request = _read_request(wire.sock)
            self.script(wire)
        except (_Stopped, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                wire.sock.close()

    def hang_up(self) -> None:
        """The watchdog: shut every connection down so a client blocked on it wakes up."""
        self.stop.set()
        with self._lock:
            wires = list(self.wires)
        for w in wires:
            with contextlib.suppress(OSError):
                w.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.hang_up()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_request(sock: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = sock.recv(65536)
        if not got:
            raise _Stopped
        buf += got
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        got = sock.recv(65536)
        if not got:
            raise _Stopped
        body += got
    return head + b"\r\n\r\n" + body


# ---- the cases ------------------------------------------------------------------------------------------


def _ping_after_token(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    while True:  # the server is "alive", the model is not: keep-alive forever, never another event
        w.sleep(0.2)
        w.chunk(keepalive(w.protocol))


def _ping_only(w: Wire) -> None:
    w.head()
    while True:
        w.chunk(keepalive(w.protocol))
        w.sleep(0.2)


GIANT_LINE_BYTES = 48 * MB


def _giant_line(w: Wire) -> None:
    w.head(chunked=False)
    w.send(token(w.protocol))
    prefix = b'{"message":{"content":"' if w.protocol == "ollama" else b'data: {"choices":[{"delta":{"content":"'
    w.send(prefix)
    piece = b"x" * (256 * 1024)
    for _ in range(GIANT_LINE_BYTES // len(piece)):  # never a newline
        w.send(piece)
    w.forever()


def _comment_flood(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    line = b": " + b"c" * 98 + b"\n"  # SSE comments that never end their event with a blank line
    block = line * 640  # 64 kB every 20 ms: ~3 MB/s, a busy proxy rather than a flood the kernel drops
    while True:
        w.chunk(block)
        w.sleep(0.02)


def _bad_json(body: bytes) -> Script:
    def script(w: Wire) -> None:
        w.head()
        w.chunk(token(w.protocol))
        w.chunk(body)
        w.chunk(finish(w.protocol))  # a client that shrugs the bad chunk off ends "ok": that must fail
        w.end_chunks()

    return script


def _bad_utf8(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    w.chunk(token(w.protocol, "BAD").replace(b"BAD", b"\xff\xfe\xc3"))
    w.chunk(finish(w.protocol))
    w.end_chunks()


HTML_PAGE = (  # a login page a captive portal or an auth proxy answers with; no "html" word in it on purpose
    b"<!DOCTYPE x><head><title>Sign in</title></head><body><form method=post action=/login>"
    b"<input name=user><input type=password name=pw><button>Sign in</button></form></body>\n"
)


def _html_login(w: Wire) -> None:
    w.head(headers={"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(HTML_PAGE))},
           chunked=False)
    w.send(HTML_PAGE)


def _gzip(w: Wire) -> None:
    body = gzip.compress(full_stream(w.protocol))
    w.head(headers={"Content-Encoding": "gzip", "Content-Length": str(len(body))}, chunked=False)
    w.send(body)


def _slowloris(w: Wire) -> None:
    w.send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while True:  # one header byte per second, forever
        w.sleep(1.0)
        w.send(b"z")


def _endless_headers(w: Wire) -> None:
    w.send(b"HTTP/1.1 200 OK\r\n")
    n = 0
    while True:
        w.send(b"".join(f"X-Pad-{n + i}: {'a' * 60}\r\n".encode() for i in range(100)))
        n += 100
        w.sleep(0.001)


def _bad_chunk_size(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    w.send(b"zz\r\n" + token(w.protocol, "lo") + b"\r\n")
    w.forever()


def _reset_mid_chunk(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    half = token(w.protocol, "lo")
    w.send(f"{len(half):x}\r\n".encode() + half[: len(half) // 2])
    w.sleep(0.05)
    w.reset()


def _never_answers(w: Wire) -> None:
    w.forever()


def _rate_limited(w: Wire) -> None:
    body = b'{"error":{"message":"rate limit reached, retry later","type":"rate_limit"}}'
    w.head(429, {"Retry-After": "7", "Content-Type": "application/json", "Content-Length": str(len(body))},
           chunked=False)
    w.send(body)


def _content_length_lie(w: Wire) -> None:
    w.head(headers={"Content-Length": "100000"}, chunked=False)
    w.send(token(w.protocol))
    w.sleep(0.05)  # then a clean FIN, 99.9 kB short of what the header promised


HUGE_ERROR_BYTES = 64 * MB


def _huge_error_body(w: Wire) -> None:
    w.head(500, {"Content-Type": "text/plain"})
    piece = b"stack trace line " * 4096
    for _ in range(HUGE_ERROR_BYTES // len(piece)):
        w.chunk(piece)
    w.end_chunks()


def _endless_tokens(w: Wire) -> None:
    w.head()
    w.chunk(token(w.protocol))
    while True:  # a model that never stops: only the total deadline ends this
        w.sleep(0.01)
        w.chunk(token(w.protocol, "."))


def _redirect_loop(w: Wire) -> None:
    w.head(302, {"Location": "/api/chat", "Content-Length": "0"}, chunked=False)


# ---- expectations ---------------------------------------------------------------------------------------


Deadline = Literal["first_token", "idle", "total", "connect"]


@dataclass(frozen=True)
class Case:
    """One misbehaviour and what the client must do about it.

    `expect`: the exception class (or tuple) the stream must end in; None = the stream must succeed.
    `deadline`: the timeout whose value + 1 s bounds the case. `partial`: text the error's `.result` keeps.
    `rss_limit`: peak RSS growth allowed. `xfail`: (selector, reason) pairs for what the client cannot do yet;
    a selector is "*", a protocol, a parser mode ("fast"/"baseline") or "protocol/mode".
    """

    name: str
    script: Script
    expect: type[BaseException] | tuple[type[BaseException], ...] | None
    deadline: Deadline = "idle"
    partial: str = ""
    protocols: tuple[Protocol, ...] = PROTOCOLS
    parser_modes: tuple[bool, ...] = (True, False)  # fast_parse on / off
    timeouts: Timeouts = TIMEOUTS
    rss_limit: int = 32 * MB
    says: tuple[str, ...] = ()  # words the error message must hold (lower case)
    says_size: bool = False  # the message must give a size (the cap, or how much came)
    retry_after_s: float | None = None
    xfail: tuple[tuple[str, str], ...] = ()
    why: str = ""

    @property
    def bound_s(self) -> float:
        limit = getattr(self.timeouts, self.deadline)
        assert limit is not None, f"{self.name}: its deadline {self.deadline} is off"
        return float(limit) + SLACK_S

    def missing(self, protocol: Protocol, fast: bool) -> str | None:
        mode = "fast" if fast else "baseline"
        for sel, reason in self.xfail:
            if sel in ("*", protocol, mode, f"{protocol}/{mode}"):
                return f"issue 11: {reason}"
        return None


NO_FIRST_OR_TOTAL = Timeouts(connect=1.0, first_token=None, idle=0.5, total=None)
CASES: tuple[Case, ...] = (
    Case("ping_after_token", _ping_after_token, IdleTimeout, partial=PARTIAL,
         why="one token, then SSE ': ping' comments / NDJSON blank lines every 200 ms forever"),
    Case("ping_only", _ping_only, IdleTimeout, timeouts=NO_FIRST_OR_TOTAL,
         why="keep-alive only, first_token and total off: the idle timeout alone must end it"),
    Case("giant_line", _giant_line, MalformedStreamError, partial=PARTIAL, rss_limit=GIANT_LINE_BYTES,
         says_size=True,
         why=f"one token, then a {GIANT_LINE_BYTES // MB} MB line that never ends"),
    Case("comment_flood", _comment_flood, (IdleTimeout, MalformedStreamError), partial=PARTIAL,
         protocols=("openai",), rss_limit=16 * MB,
         why="one token, then SSE comment lines never followed by a blank line, ~3 MB/s"),
    Case("ollama_content_5", _bad_json(b'{"message":{"content":5},"done":false}\n'), MalformedStreamError,
         partial=PARTIAL, protocols=("ollama",), says=("content",),
         why='{"message":{"content":5}}'),
    Case("openai_content_5", _bad_json(b'data: {"choices":[{"index":0,"delta":{"content":5}}]}\n\n'),
         MalformedStreamError, partial=PARTIAL, protocols=("openai",), says=("content",),
         why="delta.content of 5"),
    Case("openai_choices_dict", _bad_json(b'data: {"choices":{"index":0,"delta":{"content":"x"}}}\n\n'),
         MalformedStreamError, partial=PARTIAL, protocols=("openai",), says=("choices",),
         why="choices as a dict"),
    Case("openai_usage_7", _bad_json(b'data: {"choices":[],"usage":7}\n\n'),
         MalformedStreamError, partial=PARTIAL, protocols=("openai",), says=("usage",),
         why="usage of 7"),
    Case("bad_utf8", _bad_utf8, MalformedStreamError, partial=PARTIAL,
         why="a chunk whose text is not UTF-8"),
    Case("html_login_200", _html_login, (StreamError, StatusError), says=("html",),
         why="HTTP 200 with Content-Type text/html: a login page"),
    Case("gzip_stream", _gzip, None,
         why="a whole valid stream sent with Content-Encoding: gzip"),
    Case("slowloris_headers", _slowloris, WbTimeoutError, deadline="first_token", parser_modes=(True,),
         why="the status line, then one header byte per second"),
    Case("endless_headers", _endless_headers, (StreamError, TransportError), parser_modes=(True,),
         why="header lines forever, never the blank line"),
    Case("bad_chunk_size", _bad_chunk_size, StreamError, partial=PARTIAL, parser_modes=(True,),
         why="a good chunk, then a chunk size 'zz'"),
    Case("reset_mid_chunk", _reset_mid_chunk, StreamError, partial=PARTIAL, parser_modes=(True,),
         why="a token, half a chunk, then RST (SO_LINGER 0)"),
    Case("never_answers", _never_answers, WbTimeoutError, deadline="first_token", parser_modes=(True,),
         why="accepts, reads the request, never sends a byte"),
    Case("rate_limited_429", _rate_limited, StatusError, parser_modes=(True,), retry_after_s=7.0,
         says=("429",), why="HTTP 429 with Retry-After: 7"),
    Case("content_length_lie", _content_length_lie, TruncatedStreamError, partial=PARTIAL, parser_modes=(True,),
         why="Content-Length 100000, one token, then FIN"),
    Case("huge_error_body", _huge_error_body, StatusError, parser_modes=(True,), says=("500",),
         rss_limit=8 * MB, why=f"HTTP 500 with a {HUGE_ERROR_BYTES // MB} MB body"),
    Case("endless_tokens", _endless_tokens, TotalTimeout, deadline="total", partial=PARTIAL,
         parser_modes=(True,), timeouts=Timeouts(connect=1.0, first_token=0.5, idle=0.5, total=1.0),
         why="a token every 10 ms forever: only the total deadline ends it"),
    Case("redirect_loop", _redirect_loop, StatusError, parser_modes=(True,), says=("302",),
         why="302 to the same path"),
)
CASES_BY_NAME = {c.name: c for c in CASES}


def variants(drivers: tuple[Driver, ...] = ("sync", "async")) -> Iterator[tuple[Case, Protocol, Driver, bool]]:
    for case in CASES:
        for protocol in case.protocols:
            for fast in case.parser_modes:
                for driver in drivers:
                    yield case, protocol, driver, fast


# ---- the harness ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    protocol: Protocol
    driver: Driver
    fast: bool
    seconds: float
    rss_growth: int  # peak RSS during the case minus RSS before it, bytes
    peak_rss: int
    cpu_s: float
    error: BaseException | None
    text: str  # the result's text (the error's .result when it failed)
    deltas: list[object] = field(default_factory=list)  # what TextDelta.text held, in order
    server_sent: int = 0
    watchdog_fired: bool = False
    requests: list[bytes] = field(default_factory=list)  # what the client sent, as the server read it

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "ok"
        return type(self.error).__name__

    def problems(self) -> list[str]:
        """Every way this run broke the case's promise (empty = it kept it)."""
        c, out = self.case, []
        if self.watchdog_fired or self.seconds > c.bound_s:
            out.append(f"took {self.seconds:.2f} s > {c.deadline} {c.bound_s - SLACK_S:g} s + {SLACK_S:g} s")
        if c.expect is None:
            if self.error is not None:
                out.append(f"expected success, got {self.outcome}: {self.error}")
            elif self.text != PARTIAL + "lo":
                out.append(f"expected text {PARTIAL + 'lo'!r}, got {self.text[:80]!r}")
        else:
            if not isinstance(self.error, c.expect):
                names = [t.__name__ for t in (c.expect if isinstance(c.expect, tuple) else (c.expect,))]
                out.append(f"expected {'/'.join(names)}, got {self.outcome}: {str(self.error)[:200]}")
            if self.error is not None and not isinstance(self.error, WorkbenchError):
                out.append(f"untyped error {type(self.error).__module__}.{self.outcome}")
            if c.partial and not self.text.startswith(c.partial):
                out.append(f"partial text lost: .result.text is {self.text[:40]!r}, wanted {c.partial!r}")
            msg = str(self.error).lower()
            out += [f"message does not say {w!r}: {msg[:200]!r}" for w in c.says if w not in msg]
            if c.says_size and not _SIZE.search(msg):
                out.append(f"message gives no size: {msg[:200]!r}")
            if c.retry_after_s is not None and getattr(self.error, "retry_after_s", None) != c.retry_after_s:
                out.append(f"retry_after_s is {getattr(self.error, 'retry_after_s', None)}, not {c.retry_after_s}")
        bad = [d for d in self.deltas if not isinstance(d, str)]
        if bad:
            out.append(f"TextDelta.text of non-str values reached the user: {bad[:3]!r}")
        if self.rss_growth > c.rss_limit:
            out.append(f"peak RSS grew {self.rss_growth / MB:.1f} MB > {c.rss_limit / MB:.0f} MB")
        return out


_SIZE = re.compile(r"\d[\d,._]*\s*(bytes|kib|mib|kb|mb|b\b)")
REQUEST = Request.chat("m", "hi", max_tokens=8)


def _drive_sync(url: str, protocol: Protocol, fast: bool, timeouts: Timeouts, deltas: list[object]) -> str:
    opts = Optimizations.baseline().replace(fast_parse=fast)
    with (Client(Backend(url, protocol=protocol), optimizations=opts, timeouts=timeouts) as c,
          c.stream(REQUEST) as s):
        for e in s:
            if isinstance(e, TextDelta):
                deltas.append(e.text)
    return s.result.text


def _drive_async(url: str, protocol: Protocol, fast: bool, timeouts: Timeouts, deltas: list[object]) -> str:
    async def go() -> str:
        opts = Optimizations.baseline().replace(fast_parse=fast)
        async with AsyncClient(Backend(url, protocol=protocol), optimizations=opts, timeouts=timeouts) as c:
            async with c.stream(REQUEST) as s:
                async for e in s:
                    if isinstance(e, TextDelta):
                        deltas.append(e.text)
            return s.result.text

    return asyncio.run(go())


class _RssSampler:
    """Peak resident set size while a case runs, sampled every 2 ms (ru_maxrss only ever rises, so it
    cannot show one case's growth after an earlier case set the high-water mark)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.start = self.peak = int(self._proc.memory_info().rss)
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, int(self._proc.memory_info().rss))

    def stop(self) -> None:
        self._done.set()
        self._t.join()
        self.peak = max(self.peak, int(self._proc.memory_info().rss))


def run_case(case: Case, protocol: Protocol, driver: Driver, fast: bool) -> Outcome:
    """Run one case against the public client; never hangs: past its bound the server hangs up."""
    deltas: list[object] = []
    drive = _drive_sync if driver == "sync" else _drive_async
    with HostileServer(case.script, protocol) as server:
        fired = threading.Event()

        def watchdog() -> None:
            fired.set()
            server.hang_up()

        timer = threading.Timer(case.bound_s + 0.1, watchdog)
        rss = _RssSampler()
        cpu0 = sum(psutil.Process().cpu_times()[:2])
        t0 = time.perf_counter_ns()
        timer.start()
        error: BaseException | None = None
        text = ""
        try:
            text = drive(server.url, protocol, fast, case.timeouts, deltas)
        except Exception as e:  # judged below: anything outside the workbench tree is a finding
            error = e
            result = getattr(e, "result", None)
            text = str(getattr(result, "text", "") or "")
        seconds = (time.perf_counter_ns() - t0) / 1e9
        timer.cancel()
        cpu = sum(psutil.Process().cpu_times()[:2]) - cpu0
        rss.stop()
        sent = server.sent
        requests = [w.request for w in server.wires]
    return Outcome(case, protocol, driver, fast, seconds, rss.peak - rss.start, rss.peak, cpu, error, text,
                   deltas, sent, fired.is_set(), requests)
