"""Wire samples shaped like what real Ollama and OpenAI-compatible servers send.

Generated samples below; recorded bodies of named servers are files in `wire/` (see `wire_samples`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench._exceptions import StreamError
from workbench._types import (
    ChoiceDelta,
    DoneEvent,
    ProtocolName,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from workbench.protocols import make_parser

WIRE_DIR = Path(__file__).parent / "wire"

TEXTS = ["Hel", "lo, ", "wörld ", "日本 ", "🎉", "!"]


def _j(obj: Any) -> bytes:
    # real servers send raw UTF-8, not \u escapes
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def ollama_chat(texts: list[str] = TEXTS, *, final_text: str = "") -> bytes:
    lines = [
        _j({"model": "m", "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": t},
            "done": False})
        for t in texts
    ]
    lines.append(_j({
        "model": "m", "created_at": "2024-01-01T00:00:01Z",
        "message": {"role": "assistant", "content": final_text}, "done": True, "done_reason": "stop",
        "total_duration": 5_000_000, "load_duration": 1_000, "prompt_eval_count": 7,
        "prompt_eval_duration": 2_000, "eval_count": len(texts) + (1 if final_text else 0), "eval_duration": 3_000,
    }))
    return b"\n".join(lines) + b"\n"


def ollama_generate(texts: list[str] = TEXTS) -> bytes:
    lines = [_j({"model": "m", "created_at": "x", "response": t, "done": False}) for t in texts]
    lines.append(_j({"model": "m", "created_at": "x", "response": "", "done": True, "done_reason": "length",
                     "eval_count": len(texts), "prompt_eval_count": 3}))
    return b"\n".join(lines) + b"\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def openai_chat(texts: list[str] = TEXTS, *, usage: bool = True) -> bytes:
    events = [_chunk({"role": "assistant", "content": ""}, usage=None)]
    events += [_chunk({"content": t}, usage=None) for t in texts]
    events.append(_chunk({}, "stop", usage=None))
    if usage:
        events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": len(texts),
                                                "total_tokens": 9 + len(texts)}})
    return b"".join(b"data: " + _j(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def openai_completion(texts: list[str] = TEXTS) -> bytes:
    events = [{"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in texts]
    events.append({"id": "cmpl-1", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    return b"".join(b"data: " + _j(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def openai_fancy_framing(texts: list[str] = TEXTS) -> bytes:
    """Legal SSE that naive clients get wrong: comments, pings, other fields, no space, multi-line data."""
    out = [b": this is a comment\n\n", b"retry: 3000\n\n"]
    out.append(b"event: message\nid: 1\ndata:" + _j(_chunk({"role": "assistant"})) + b"\n\n")
    for i, t in enumerate(texts):
        body = _j(_chunk({"content": t}))
        if i % 2:
            # one JSON document split over two data lines; the spec joins them with "\n"
            cut = body.index(b",")
            out.append(b"data: " + body[:cut] + b"\ndata: " + body[cut:] + b"\n\n")
        else:
            out.append(b"id: " + str(i).encode() + b"\ndata: " + body + b"\n\n")
        out.append(b": ping\n\n")
    out.append(b"data: " + _j(_chunk({}, "stop")) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


SAMPLES: dict[str, tuple[ProtocolName, bytes]] = {
    "ollama_chat": ("ollama", ollama_chat()),
    "ollama_chat_done_text": ("ollama", ollama_chat(final_text=" end")),
    "ollama_generate": ("ollama", ollama_generate()),
    "openai_chat": ("openai", openai_chat()),
    "openai_chat_nousage": ("openai", openai_chat(usage=False)),
    "openai_completion": ("openai", openai_completion()),
    "openai_fancy": ("openai", openai_fancy_framing()),
}


def wire_samples() -> dict[str, tuple[ProtocolName, bytes, dict[str, Any]]]:
    """Every recorded body in wire/: name -> (protocol, body bytes, its sidecar `<name>.meta.json`)."""
    out: dict[str, tuple[ProtocolName, bytes, dict[str, Any]]] = {}
    for path in sorted(WIRE_DIR.iterdir()):
        if path.suffix not in (".sse", ".ndjson"):
            continue
        meta = json.loads(path.with_suffix(".meta.json").read_text())
        out[path.stem] = (meta["protocol"], path.read_bytes(), meta)
    return out


def run(
    protocol: ProtocolName, reads: list[bytes], *, fast: bool, close: bool = True
) -> tuple[list[StreamEvent], StreamError | None]:
    """Feed reads (stamped 0, 1, 2, ...) the way the client does; return events and the error, if any."""
    parser = make_parser(protocol, fast=fast)
    events: list[StreamEvent] = []
    try:
        for i, data in enumerate(reads):
            events += parser.feed(data, i)
            if parser.error is not None:
                raise parser.error
        if close:
            # as the client does: hand over what is buffered, then judge the ending
            events += parser.flush(len(reads))
            events += parser.close(len(reads))
    except StreamError as exc:
        return events, exc
    return events, None


def shape(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    """Events without their stamps, for comparing runs."""
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if isinstance(ev, TextDelta):
            out.append(("text", ev.text))
        elif isinstance(ev, ReasoningDelta):
            out.append(("reasoning", ev.text, ev.choice))
        elif isinstance(ev, ChoiceDelta):
            out.append(("choice", ev.choice, ev.text))
        elif isinstance(ev, ToolCallDelta):
            out.append(("tool", ev.choice, ev.index, ev.id, ev.name, ev.arguments))
        elif isinstance(ev, UsageEvent):
            out.append(("usage", ev.usage.prompt_tokens, ev.usage.completion_tokens))
        elif isinstance(ev, DoneEvent):
            server = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in ev.server.items()))
            out.append(("done", ev.finish_reason, server, tuple(sorted(ev.finish_reasons.items()))))
    return out


def text_of(events: list[StreamEvent]) -> str:
    return "".join(ev.text for ev in events if isinstance(ev, TextDelta))
