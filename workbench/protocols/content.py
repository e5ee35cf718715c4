"""What the response headers say about the body: its Content-Type and its Content-Encoding. No I/O.

`check_content_type` names an HTML page (a login proxy, a captive portal, a web UI at the wrong URL) as
such, where parsing it would only say "connection closed early"; it is lenient with the types real
servers send for a stream (text/event-stream, application/x-ndjson, application/json, text/plain, none
at all) and strict only for bodies that are clearly no stream. `decoder_for` decodes the compression we
advertise (`ACCEPT_ENCODING`) read by read, so a compressed stream parses as it arrives.
"""

from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod
from typing import Protocol

import zstandard

from workbench._exceptions import MalformedStreamError
from workbench.protocols._common import snippet

__all__ = ["ACCEPT_ENCODING", "ContentDecoder", "check_content_type", "decoder_for"]

# What the client should send as Accept-Encoding: exactly the encodings `decoder_for` decodes.
ACCEPT_ENCODING = "gzip, deflate, zstd"

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Media types no streaming server sends for a chat stream: a file, a picture, a document.
_NOT_A_STREAM = (
    "image/",
    "audio/",
    "video/",
    "font/",
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "multipart/",
)
_HTML_START = re.compile(rb"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|title)[\s>]", re.I | re.S)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.I | re.S)
_URL_HINT = (
    "check the URL (the server root, http://host:port, not a web page) and whether a login page, captive "
    "portal or proxy answers in front of the server"
)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(protocol: str, content_type: str | None, first_bytes: bytes = b"") -> None:
    """Raise MalformedStreamError when a 2xx streaming answer is clearly no `protocol` stream.

    `content_type` is the Content-Type header (None if absent); `first_bytes` the start of the (decoded)
    body if already read, used to recognise an HTML page a server sent with no or a vague type.
    """
    media = _media_type(content_type)
    shown = content_type if content_type else "missing"
    if media in _HTML_TYPES or (
        media in ("", "text/plain", "application/octet-stream") and _HTML_START.match(first_bytes[:4096])
    ):
        title = _TITLE.search(first_bytes[:4096])
        named = f" titled {snippet(title.group(1).strip(), 80)}" if title else ""
        start = f"; it starts {snippet(first_bytes)}" if first_bytes else ""
        raise MalformedStreamError(
            f"the server answered with an HTML page{named} (Content-Type {shown}), not an {protocol} "
            f"stream{start}",
            hint=_URL_HINT,
        )
    if media.startswith(_NOT_A_STREAM):
        raise MalformedStreamError(
            f"the server answered with Content-Type {shown}, which is no {protocol} stream",
            hint=_URL_HINT + "; check --protocol (openai or ollama)",
        )


class ContentDecoder(Protocol):
    """Decodes a body read by read: `decoder(data)` gives what those bytes decode to, `flush()` the rest."""

    def __call__(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def __call__(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def _corrupt(encoding: str, exc: Exception) -> MalformedStreamError:
    return MalformedStreamError(
        f"the server's {encoding}-compressed stream could not be decoded: {exc}",
        hint="the body is corrupt or not the encoding the server named; retry, or check the server or proxy",
    )


class _Decompressor(Protocol):
    """zlib's and zstandard's decompress objects, as far as `_Members` uses them."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class _Members(ABC):
    """A compressed body of several members one after another (gzip members, zstd frames): a fresh
    decompress object takes the bytes after each member's end."""

    _encoding: str
    _errors: type[Exception]
    _obj: _Decompressor

    @abstractmethod
    def _next(self) -> _Decompressor:
        """A fresh decompress object for the next member."""

    def __call__(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                out.append(self._obj.decompress(data))
                if not self._obj.eof:
                    break
                data = self._obj.unused_data
                self._obj = self._next()
        except self._errors as exc:
            raise _corrupt(self._encoding, exc) from None
        return b"".join(out)


class _Zlib(_Members):
    """gzip (wbits 31), zlib-wrapped deflate (15) or raw deflate (-15), several members one after another
    (a gzip stream may hold several; a server flushing per chunk still sends one)."""

    _errors = zlib.error

    def __init__(self, encoding: str, wbits: int) -> None:
        self._encoding = encoding
        self._wbits = wbits
        # the same object as `_obj`, under zlib's own type for `flush()`
        self._zlib = self._obj = zlib.decompressobj(wbits)

    def _next(self) -> _Decompressor:
        self._zlib = zlib.decompressobj(self._wbits)
        return self._zlib

    def flush(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error as exc:
            raise _corrupt(self._encoding, exc) from None


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped (RFC 9110) or, from some, raw; told by the first 2 bytes."""

    def __init__(self) -> None:
        self._head = b""
        self._inner: _Zlib | None = None

    def __call__(self, data: bytes) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            b0, b1 = self._head[0], self._head[1]
            wrapped = b0 & 0x0F == 8 and (b0 << 8 | b1) % 31 == 0  # a zlib header (RFC 1950)
            self._inner = _Zlib("deflate", 15 if wrapped else -15)
            data, self._head = self._head, b""
        return self._inner(data)

    def flush(self) -> bytes:
        if self._inner is None:
            return self(self._head) if self._head else b""
        return self._inner.flush()


class _Zstd(_Members):
    """zstd, frame after frame (a server may end a frame per flush)."""

    _encoding = "zstd"
    _errors = zstandard.ZstdError

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()

    def _next(self) -> _Decompressor:
        return self._dctx.decompressobj()

    def flush(self) -> bytes:
        return b""  # zstd hands out all it can decode at once; a cut frame's rest is lost with the stream


class _Chain:
    """Several encodings (`Content-Encoding: gzip, zstd`): undone last first."""

    def __init__(self, decoders: list[ContentDecoder]) -> None:
        self._decoders = decoders

    def __call__(self, data: bytes) -> bytes:
        for d in self._decoders:
            data = d(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for d in self._decoders:
            data = d(data) + d.flush()
        return data


def _one(encoding: str) -> ContentDecoder:
    if encoding in ("gzip", "x-gzip"):
        return _Zlib("gzip", 31)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "zstd":
        return _Zstd()
    if encoding in ("", "identity"):
        return _Identity()
    raise MalformedStreamError(
        f"the server compressed the stream with {encoding!r} (Content-Encoding), which workbench cannot "
        "decode",
        hint=f"the client asks for {ACCEPT_ENCODING} only: check a proxy between you and the server, or make "
        "it send identity",
    )


def decoder_for(content_encoding: str | None) -> ContentDecoder:
    """The decoder for a Content-Encoding header (None or "identity": bytes pass through unchanged).

    Raises MalformedStreamError for an encoding it cannot decode; each call raises it for corrupt data.
    """
    names = [e.strip().lower() for e in (content_encoding or "").split(",")]
    names = [n for n in names if n and n != "identity"]
    if not names:
        return _Identity()
    if len(names) == 1:
        return _one(names[0])
    return _Chain([_one(n) for n in reversed(names)])
