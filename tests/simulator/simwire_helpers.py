"""Wire-format helpers for the simulator tests (a uniquely named module: every test dir has a conftest)."""

from __future__ import annotations

from typing import Any

import orjson


def sse_payloads(body: bytes) -> list[bytes]:
    """Split an SSE body into event payloads, checking the exact `data: ...\\n\\n` framing."""
    assert body.endswith(b"\n\n"), body[-40:]
    events = body[:-2].split(b"\n\n")
    out = []
    for ev in events:
        assert ev.startswith(b"data: "), ev[:40]
        assert b"\n" not in ev
        out.append(ev[len(b"data: ") :])
    return out


def sse_json(body: bytes) -> tuple[list[dict[str, Any]], bool]:
    payloads = sse_payloads(body)
    done = payloads[-1] == b"[DONE]"
    return [orjson.loads(p) for p in (payloads[:-1] if done else payloads)], done


def ndjson(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\n")
    return [orjson.loads(line) for line in body[:-1].split(b"\n")]


def chat_body(prompt: str = "hello there", **kw: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": prompt}], **kw}
