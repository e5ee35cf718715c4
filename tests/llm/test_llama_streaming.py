"""The workbench against a server we did not write: llama-cpp-python's OpenAI-compatible server (llm extra).

One server for the session (`llama_server` in tests/conftest.py). The model is the base Gemma 3 270M: its text
means nothing, so the tests check the wire and the figures, never the words. Requests use temperature 0 and a
seed so repeated prompts give the same tokens; max_tokens stays small to keep the tests short.
"""

from __future__ import annotations

import asyncio
import time
from statistics import median
from typing import Any

import httpx
import openai
import orjson
import pytest

from workbench import (
    AsyncClient,
    CancelledError,
    Client,
    DoneEvent,
    Optimizations,
    Request,
    StreamEvent,
    StreamResult,
    TextDelta,
)
from workbench.llm import LlamaServer

pytestmark = pytest.mark.extras

MAX_TOKENS = 16
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 7}


def make_request(server: LlamaServer, endpoint: str, text: str, **kw: Any) -> Request:
    kw = {"max_tokens": MAX_TOKENS, **GREEDY, **kw}
    if endpoint == "chat":
        return Request.chat(server.model, text, **kw)
    return Request.completion(server.model, text, **kw)


def separate(server: LlamaServer, endpoint: str) -> None:
    """One token for another prompt of the same kind, so the next request starts from the same cache state.

    llama.cpp keeps the previous prompt's KV cache and evaluates only the tokens after the common prefix. A
    prompt sent twice in a row is evaluated in a different split the second time, and the float results differ
    enough to change a greedy pick now and then; after another prompt of the same kind (chat prompts share
    the template's first tokens) every repeat is evaluated the same way.
    """
    body: dict[str, Any] = {"model": server.model, "max_tokens": 1, **GREEDY}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": "Separator."}]
    else:
        body["prompt"] = "Separator."
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    httpx.post(server.url + path, json=body, timeout=60).raise_for_status()


def check_result(r: StreamResult, events: list[StreamEvent], max_tokens: int = MAX_TOKENS) -> None:
    """What every finished stream from llama.cpp must show, with or without the async client."""
    assert r.ok, f"{r.error_kind}: {r.error}"
    assert r.protocol == "openai" and r.http_version == "HTTP/1.1"
    deltas = [e for e in events if isinstance(e, TextDelta) and e.text]
    assert deltas, "no text arrived"
    assert "".join(d.text for d in deltas) == r.text
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.finish_reason in ("length", "stop")
    assert r.finish_reason == done.finish_reason
    # llama.cpp streams no usage even when asked (stream_options.include_usage): tokens are counted by chunks
    assert r.usage is None and r.metrics.tokens_source == "chunks"
    assert r.metrics.output_tokens == len(deltas) <= max_tokens
    if done.finish_reason == "length":
        assert r.metrics.output_tokens == max_tokens  # one token per chunk on this server
    stamps = [d.t_ns for d in deltas]
    assert stamps == sorted(stamps) and stamps[0] > r.sent_ns
    m = r.metrics
    assert m.ttft_ms is not None and m.e2e_ms is not None and 0 < m.ttft_ms <= m.e2e_ms
    assert len(m.itl_ms) == m.output_tokens - 1 and all(g >= 0 for g in m.itl_ms)


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_sync_stream(llama_server: LlamaServer, endpoint: str) -> None:
    req = make_request(llama_server, endpoint, f"Tell me about rivers ({endpoint}).")
    with Client(llama_server.backend()) as client, client.stream(req) as stream:
        events = list(stream)
    check_result(stream.result, events)
    assert stream.result.server.get("model") == llama_server.model


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
async def test_async_stream(llama_server: LlamaServer, endpoint: str) -> None:
    req = make_request(llama_server, endpoint, f"Write about mountains ({endpoint}).")
    async with AsyncClient(llama_server.backend()) as client, client.stream(req) as stream:
        events = [e async for e in stream]
    check_result(stream.result, events)


def _raw_chunks(server: LlamaServer, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's SSE data objects, read with plain httpx: what llama.cpp really sends."""
    out: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", server.url + path, json=body) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(orjson.loads(line[6:]))
    return out


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
def test_usage_less_stream_counts_tokens_by_chunks(llama_server: LlamaServer, endpoint: str) -> None:
    """llama.cpp sends no usage in a stream, even with stream_options.include_usage; the workbench counts text
    chunks and says so, and that count equals the tokens the server itself reports for the same generation
    when asked without streaming."""
    text = f"Describe a quiet harbour at dawn ({endpoint})."
    req = make_request(llama_server, endpoint, text, max_tokens=24)
    body: dict[str, Any] = {"model": llama_server.model, "stream": True, "max_tokens": 24, **GREEDY}
    body["stream_options"] = {"include_usage": True}
    if endpoint == "chat":
        path, body["messages"] = "/v1/chat/completions", [{"role": "user", "content": text}]
    else:
        path, body["prompt"] = "/v1/completions", text
    raw = _raw_chunks(llama_server, path, body)
    assert raw and all(c.get("usage") is None for c in raw), (
        "the server started sending usage: update this test"
    )
    key = "delta" if endpoint == "chat" else None
    raw_texts = [
        (c["choices"][0][key].get("content") if key else c["choices"][0].get("text")) or "" for c in raw
    ]

    separate(llama_server, endpoint)
    with Client(llama_server.backend()) as client:
        r = client.run(req)
    assert r.usage is None and r.metrics.tokens_source == "chunks"
    assert r.text == "".join(raw_texts)  # same greedy tokens as the raw read
    assert r.metrics.output_tokens == sum(1 for t in raw_texts if t)

    # the server's own count, from a non-streamed request through the official client
    separate(llama_server, endpoint)
    oc = openai.OpenAI(base_url=llama_server.url + "/v1", api_key="none", max_retries=0)
    try:
        if endpoint == "chat":
            full: Any = oc.chat.completions.create(
                model=llama_server.model,
                messages=[{"role": "user", "content": text}],
                max_tokens=24,
                **GREEDY,
            )
            full_text = full.choices[0].message.content
        else:
            full = oc.completions.create(model=llama_server.model, prompt=text, max_tokens=24, **GREEDY)
            full_text = full.choices[0].text
    finally:
        oc.close()
    assert full.usage is not None and full.usage.completion_tokens == r.metrics.output_tokens
    assert full_text == r.text


def _wait_for_log(server: LlamaServer, needle: str, count: int, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = server.log_tail(200_000).count(needle)
        if seen >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


DISCONNECT = "Disconnected from client"  # what llama-cpp-python prints when it sees a client go


def _check_cancel(
    server: LlamaServer, r: StreamResult, next_result: StreamResult, before: int, n_requested: int
) -> None:
    assert r.status == "cancelled" and r.text and len(r.chunk_texts()) >= 3
    # the server saw the disconnect (its own log line), so it stopped generating for the cancelled stream ...
    assert _wait_for_log(server, DISCONNECT, before + 1) == before + 1
    # ... and the next request works and does not wait behind the rest of the cancelled one: its TTFT is far
    # below what the cancelled stream's remaining tokens would have taken at that stream's own pace
    assert next_result.ok and next_result.metrics.output_tokens > 0
    remaining_ms = (n_requested - len(r.chunk_texts())) * median(r.metrics.itl_ms)
    assert next_result.metrics.ttft_ms is not None and next_result.metrics.ttft_ms < remaining_ms / 4, (
        next_result.metrics.ttft_ms,
        remaining_ms,
    )


def test_cancel_mid_stream_then_next_request_works(llama_server: LlamaServer) -> None:
    before = llama_server.log_tail(200_000).count(DISCONNECT)
    req = make_request(llama_server, "completion", "A long story about the sea:", max_tokens=400)
    with Client(llama_server.backend(), optimizations=Optimizations(early_cancel=True)) as client:
        with client.stream(req) as stream:
            n = 0
            with pytest.raises(CancelledError) as info:
                for ev in stream:
                    if isinstance(ev, TextDelta) and ev.text:
                        n += 1
                        if n == 3:
                            stream.cancel()
        r = info.value.result
        assert r is not None
        after = client.run(make_request(llama_server, "chat", "Name three colours."))
    _check_cancel(llama_server, r, after, before, 400)


async def test_async_cancel_mid_stream_then_next_request_works(llama_server: LlamaServer) -> None:
    before = llama_server.log_tail(200_000).count(DISCONNECT)
    req = make_request(llama_server, "chat", "Write a very long poem about forests.", max_tokens=400)
    opts = Optimizations(early_cancel=True, connection_pool=True)
    async with AsyncClient(llama_server.backend(), optimizations=opts) as client:
        async with client.stream(req) as stream:
            n = 0
            with pytest.raises(CancelledError) as info:
                async for ev in stream:
                    if isinstance(ev, TextDelta) and ev.text:
                        n += 1
                        if n == 3:
                            stream.cancel()
        r = info.value.result
        assert r is not None
        after = await client.run(make_request(llama_server, "completion", "Three colours are"))
    await asyncio.to_thread(_check_cancel, llama_server, r, after, before, 400)


def test_unknown_model_is_served_by_the_only_model(llama_server: LlamaServer) -> None:
    """llama-cpp-python's server does not reject an unknown model name: it serves its one model and echoes the
    name it was asked for. The workbench reports what the server did: an ok stream, the echoed model in
    `result.server`, and the server's own list (GET /v1/models) that names the real one."""
    prompt = "List four fruits."
    with Client(llama_server.backend()) as client:
        separate(llama_server, "chat")
        unknown = client.run(Request.chat("no-such-model", prompt, max_tokens=MAX_TOKENS, **GREEDY))
        separate(llama_server, "chat")
        real = client.run(make_request(llama_server, "chat", prompt))
    assert unknown.ok and unknown.server.get("model") == "no-such-model"
    assert unknown.text == real.text  # the same greedy tokens: the same model answered
    listed = httpx.get(llama_server.url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in listed["data"]] == [llama_server.model]
