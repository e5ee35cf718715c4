"""The public client against a server written to misbehave (tests/adversarial/_hostile.py, a raw socket).

Every case, sync and async, each protocol it applies to, both parser modes where parsing is involved (the
transport-level cases run with fast parsing only: the parser never sees their bytes). Each must end within
its configured timeout + 1 s in a typed workbench error that keeps the text already received, with peak RSS
growth under the case's limit (the input size for the giant line). What the client cannot do yet (issue 11)
is marked xfail(strict=True): it turns into a failure the day it is fixed, so the mark is then removed.
"""

from __future__ import annotations

import gzip
import zlib

import pytest
from _hostile import (
    CASES,
    HUGE_ERROR_BYTES,
    MB,
    PARTIAL,
    Case,
    Driver,
    HostileServer,
    Protocol,
    Wire,
    full_stream,
    run_case,
    variants,
)

from workbench import StatusError


def _params() -> list[object]:
    out: list[object] = []
    for case, protocol, driver, fast in variants():
        reason = case.missing(protocol, fast)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        mode = "fast" if fast else "baseline"
        out.append(pytest.param(case, protocol, driver, fast, marks=marks,
                                id=f"{case.name}-{protocol}-{driver}-{mode}"))
    return out


@pytest.mark.parametrize(("case", "protocol", "driver", "fast"), _params())
def test_hostile_case(case: Case, protocol: Protocol, driver: Driver, fast: bool) -> None:
    o = run_case(case, protocol, driver, fast)
    problems = o.problems()
    assert not problems, (
        f"{case.name} ({case.why}) over {protocol}, {driver}, fast_parse={fast}: "
        f"{o.outcome} after {o.seconds:.2f} s, RSS +{o.rss_growth / MB:.1f} MB:\n  " + "\n  ".join(problems)
    )


def test_the_harness_catches_a_hang() -> None:
    """The suite's own safety net: a server that never answers, with every client timeout off, is cut by the
    watchdog at its bound and reported as too slow, instead of hanging the test run."""
    from workbench import Timeouts

    never = next(c for c in CASES if c.name == "never_answers")
    off = Timeouts(connect=1.0, first_token=None, idle=None, total=None)
    hang = Case("hang", never.script, never.expect, deadline="connect", timeouts=off)  # bound: 1 + 1 s
    o = run_case(hang, "ollama", "sync", True)
    assert o.watchdog_fired and 2.0 <= o.seconds < 3.5, o.seconds
    assert any(p.startswith("took") for p in o.problems()), o.problems()


def test_huge_error_body_is_read_only_to_an_excerpt() -> None:
    huge = next(c for c in CASES if c.name == "huge_error_body")
    o = run_case(huge, "openai", "sync", True)
    assert isinstance(o.error, StatusError) and o.error.status_code == 500
    assert len(o.error.body_excerpt) <= 300
    assert o.server_sent < HUGE_ERROR_BYTES // 2, "the client read the whole 64 MB error body"


def _compressed(encoding: str, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(body)
    if encoding == "br":
        brotli = pytest.importorskip("brotli")
        out: bytes = brotli.compress(body)
        return out
    raise AssertionError(f"the client advertised {encoding!r}, which this test cannot produce")


def _advertised(protocol: Protocol) -> list[str]:
    """The encodings the client offers in Accept-Encoding, as a server reads them off the wire."""
    limited = next(c for c in CASES if c.name == "rate_limited_429")
    o = run_case(limited, protocol, "sync", True)
    head = o.requests[0].split(b"\r\n\r\n")[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip() == "accept-encoding":
            return [v.split(";")[0].strip() for v in value.split(",") if v.strip()]
    return []


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_every_advertised_encoding_is_decoded(protocol: Protocol) -> None:
    offered = [e for e in _advertised(protocol) if e not in ("identity", "*")]
    if not offered:
        return  # the client asks for identity: the gzip_stream case checks it copes when a server ignores that
    for encoding in offered:

        def script(w: Wire, encoding: str = encoding) -> None:
            body = _compressed(encoding, full_stream(w.protocol))
            w.head(headers={"Content-Encoding": encoding, "Content-Length": str(len(body))}, chunked=False)
            w.send(body)

        case = Case(f"encoding_{encoding}", script, None)
        for driver in ("sync", "async"):
            o = run_case(case, protocol, driver, True)
            assert not o.problems(), (encoding, driver, o.problems())
            assert o.text == PARTIAL + "lo"


def test_hostile_server_is_not_the_simulator() -> None:
    """The server under these tests speaks raw bytes: it can send what no framework would let it."""
    with HostileServer(lambda w: w.send(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nraw"), "ollama") as s:
        import socket

        with socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1]))) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while chunk := c.recv(4096):
                got += chunk
    assert got == b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nraw"
