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
from workbench.protocols._shape import DEFAULT_MAX_EVENT_BYTES
from workbench.protocols.content import ACCEPT_ENCODING, ContentDecoder, check_content_type, decoder_for
from workbench.protocols.sse import SSEFramer

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_EVENT_BYTES",
    "Completion",
    "ContentDecoder",
    "Parser",
    "PreparedRequest",
    "SSEFramer",
    "build_request",
    "check_content_type",
    "decoder_for",
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


def make_parser(
    protocol: ProtocolName, *, fast: bool = True, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> Parser:
    """A stream parser. `max_event_bytes` bounds one NDJSON line / SSE event (comments included): over it
    is a MalformedStreamError that names the size, never a buffer that grows without end."""
    cap = max_event_bytes
    if protocol == "ollama":
        return ollama.FastParser(max_event_bytes=cap) if fast else ollama.BaselineParser(max_event_bytes=cap)
    return openai.FastParser(max_event_bytes=cap) if fast else openai.BaselineParser(max_event_bytes=cap)


def parse_completion(protocol: ProtocolName, body: bytes) -> Completion:
    if protocol == "ollama":
        return ollama.parse_completion(body)
    return openai.parse_completion(body)
