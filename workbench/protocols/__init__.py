"""Sans-I/O protocol layer: request bodies, incremental stream parsers, reply and error-body parsing.

Bytes in, events out; nothing here opens a socket. Each protocol has a FAST parser (byte framing of a
whole read at once, msgspec decoding into just the fields needed, orjson for anything unusual) and a
BASELINE parser (what a typical client does: iter_lines + json.loads + a dict
per chunk); both give the same events for the same bytes.
"""

from __future__ import annotations

from workbench._types import ProtocolName, Request
from workbench.protocols import ollama, openai
from workbench.protocols._common import Completion, Parser, PreparedRequest, parse_error_body
from workbench.protocols.sse import SSEFramer

__all__ = [
    "Completion",
    "Parser",
    "PreparedRequest",
    "SSEFramer",
    "build_request",
    "make_parser",
    "ollama",
    "openai",
    "parse_completion",
    "parse_error_body",
]


def build_request(protocol: ProtocolName, request: Request, *, stream: bool = True) -> PreparedRequest:
    if protocol == "ollama":
        return ollama.build_request(request, stream=stream)
    return openai.build_request(request, stream=stream)


def make_parser(protocol: ProtocolName, *, fast: bool = True) -> Parser:
    if protocol == "ollama":
        return ollama.FastParser() if fast else ollama.BaselineParser()
    return openai.FastParser() if fast else openai.BaselineParser()


def parse_completion(protocol: ProtocolName, body: bytes) -> Completion:
    if protocol == "ollama":
        return ollama.parse_completion(body)
    return openai.parse_completion(body)
