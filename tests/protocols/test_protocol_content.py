"""Content-Type checks (an HTML page named as such) and streaming decoding of what the client advertises."""

from __future__ import annotations

import gzip
import itertools
import random
import zlib

import pytest
import zstandard
from protocol_wire_samples import run, shape, wire_samples

from workbench._exceptions import MalformedStreamError
from workbench.protocols import ACCEPT_ENCODING, check_content_type, decoder_for

LOGIN = b"<!DOCTYPE html>\n<html><head><title>Sign in - Corp SSO</title></head><body>...</body></html>"


# ---- Content-Type ----

@pytest.mark.parametrize(
    "ctype",
    [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "application/x-ndjson",
        "application/json; charset=utf-8",  # llama.cpp and some proxies label a stream as JSON
        "text/plain; charset=utf-8",
        "application/octet-stream",
        None,  # no header at all
        "",
        "TEXT/EVENT-STREAM",
    ],
)
@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_stream_types_real_servers_send_are_accepted(protocol: str, ctype: str | None) -> None:
    check_content_type(protocol, ctype, b'data: {"choices":[]}\n\n' if protocol == "openai" else b'{"done":false}\n')


def test_the_recorded_bodies_pass_with_no_content_type() -> None:
    for name, (protocol, wire, _) in wire_samples().items():
        check_content_type(protocol, None, wire[:512])  # must not raise
        assert name


@pytest.mark.parametrize("ctype", ["text/html", "text/html; charset=UTF-8", "application/xhtml+xml"])
def test_an_html_page_is_named_as_such(ctype: str) -> None:
    with pytest.raises(MalformedStreamError) as info:
        check_content_type("openai", ctype, LOGIN)
    msg = str(info.value)
    assert "HTML page" in msg and "Sign in - Corp SSO" in msg and ctype in msg, msg
    assert "check the URL" in msg and "login page" in msg


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/octet-stream"])
def test_an_html_page_with_a_vague_type_is_recognised_by_its_start(ctype: str | None) -> None:
    with pytest.raises(MalformedStreamError, match="HTML page"):
        check_content_type("ollama", ctype, b"  \r\n<!-- proxy -->\n<html lang=en><body>denied</body></html>")


def test_html_words_inside_a_stream_are_not_an_html_page() -> None:
    check_content_type("openai", None, b'data: {"choices":[{"delta":{"content":"<html>"}}]}\n\n')


@pytest.mark.parametrize("ctype", ["image/png", "application/pdf", "video/mp4"])
def test_clearly_not_a_stream_is_refused(ctype: str) -> None:
    with pytest.raises(MalformedStreamError, match=ctype):
        check_content_type("openai", ctype, b"\x89PNG")


# ---- Content-Encoding ----

def _zstd_frames(body: bytes) -> bytes:
    # a server flushing per event: one frame each, as a streaming compressor may send them
    c = zstandard.ZstdCompressor()
    return b"".join(c.compress(body[i : i + 300]) for i in range(0, len(body), 300))


def _gzip_flushed(body: bytes) -> bytes:
    # what a streaming server sends: one gzip stream, sync-flushed after each piece
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [c.compress(body[i : i + 200]) + c.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(body), 200)]
    return b"".join(parts) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "gzip-flushed": _gzip_flushed,
    "gzip-two-members": lambda b: gzip.compress(b[: len(b) // 2]) + gzip.compress(b[len(b) // 2 :]),
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 says
    "deflate-raw": lambda b: (lambda c: c.compress(b) + c.flush())(zlib.compressobj(6, zlib.DEFLATED, -15)),
    "zstd": zstandard.ZstdCompressor().compress,
    "zstd-frames": _zstd_frames,
}


def _decode_in_reads(encoding: str, data: bytes, cuts: list[int]) -> bytes:
    dec = decoder_for(encoding)
    bounds = [0, *cuts, len(data)]
    return b"".join(dec(data[a:b]) for a, b in itertools.pairwise(bounds)) + dec.flush()


@pytest.mark.parametrize("how", sorted(ENCODERS))
def test_compressed_wire_bodies_decode_split_anywhere_and_parse_alike(how: str) -> None:
    header = how.split("-")[0]
    rng = random.Random(how)
    for name, (protocol, wire, _) in sorted(wire_samples().items()):
        packed = ENCODERS[how](wire)
        assert packed != wire
        splits = [[], [1], [2], [len(packed) - 1], sorted(rng.sample(range(1, len(packed)), k=min(6, len(packed) - 1)))]
        splits.append(list(range(1, len(packed))))  # one byte per read
        for cuts in splits:
            assert _decode_in_reads(header, packed, cuts) == wire, (name, cuts)
        # the decoded reads go to both parsers and give what the plain body gives
        dec = decoder_for(header)
        reads = [dec(packed[i : i + 37]) for i in range(0, len(packed), 37)] + [dec.flush()]
        for fast in (True, False):
            assert shape(run(protocol, reads, fast=fast)[0]) == shape(run(protocol, [wire], fast=fast)[0]), name


def test_identity_and_no_header_pass_bytes_through() -> None:
    for enc in (None, "", "identity", " Identity "):
        dec = decoder_for(enc)
        assert dec(b"abc") == b"abc" and dec.flush() == b""


def test_stacked_encodings_are_undone_in_reverse() -> None:
    body = b"data: [DONE]\n\n" * 50
    packed = zstandard.ZstdCompressor().compress(gzip.compress(body))
    dec = decoder_for("gzip, zstd")
    assert b"".join(dec(packed[i : i + 5]) for i in range(0, len(packed), 5)) + dec.flush() == body


def test_an_unknown_encoding_says_what_the_client_asked_for() -> None:
    with pytest.raises(MalformedStreamError) as info:
        decoder_for("br")
    assert "'br'" in str(info.value) and ACCEPT_ENCODING in str(info.value)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_corrupt_compressed_data_is_malformed(encoding: str) -> None:
    dec = decoder_for(encoding)
    with pytest.raises(MalformedStreamError, match=f"{encoding}-compressed"):
        dec(b"\x00\x01 this is not compressed at all \xff" * 4)
        dec.flush()
