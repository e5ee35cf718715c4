"""OpenAI wire format, byte for byte where it matters."""

from __future__ import annotations

import base64
import re
from array import array

import httpx
import orjson
from simwire_helpers import chat_body, sse_json, sse_payloads

from workbench.simulator import Simulator


def test_chat_stream_exact_shape_with_usage(http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions",
        json=chat_body(
            "one two three four", stream=True, max_tokens=5, stream_options={"include_usage": True}
        ),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    chunks, done = sse_json(r.content)
    assert done
    role, *content, usage = chunks
    assert role["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert list(role) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    assert role["usage"] is None
    assert len(content) == 5
    for c in content:
        assert c["object"] == "chat.completion.chunk"
        assert c["id"] == role["id"] and re.fullmatch(r"chatcmpl-[0-9a-f]{29}", c["id"])
        assert c["model"] == "sim-small" and c["created"] == role["created"]
        assert c["system_fingerprint"].startswith("fp_")
        assert c["usage"] is None
        assert set(c["choices"][0]["delta"]) == {"content"}
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * 4 + ["length"]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert len(text.split(" ")) == 5


def test_chat_stream_without_usage_has_no_usage_field(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(stream=True, max_tokens=3))
    chunks, done = sse_json(r.content)
    assert done
    assert len(chunks) == 4  # role + 3 content, no usage chunk
    assert all("usage" not in c for c in chunks)
    assert sse_payloads(r.content)[-1] == b"[DONE]"
    assert r.content.endswith(b"data: [DONE]\n\n")


def test_default_length_is_stop_and_within_profile_range(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body("no limit here", stream=True))
    chunks, _ = sse_json(r.content)
    content = chunks[1:]
    assert 48 <= len(content) <= 160
    assert content[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_non_stream(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body("a b c", max_tokens=7))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split(" ")) == 7
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    assert int(r.headers["content-length"]) == len(r.content)


def test_stream_text_equals_non_stream_text(http: httpx.Client) -> None:
    full = http.post("/v1/chat/completions", json=chat_body("same prompt", max_tokens=20)).json()
    r = http.post("/v1/chat/completions", json=chat_body("same prompt", max_tokens=20, stream=True))
    chunks, _ = sse_json(r.content)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == full["choices"][0]["message"]["content"]


def test_completions_stream_and_full(http: httpx.Client) -> None:
    body = {"model": "sim-large", "prompt": "once upon", "max_tokens": 4}
    r = http.post("/v1/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    chunks, done = sse_json(r.content)
    assert done
    assert all(c["object"] == "text_completion" for c in chunks)
    assert re.fullmatch(r"cmpl-[0-9a-f]{29}", chunks[0]["id"])
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
    full = http.post("/v1/completions", json=body).json()
    assert full["object"] == "text_completion"
    assert full["choices"][0]["text"] == text


def test_zero_tokens_still_sends_finish_reason(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(stream=True, max_tokens=0))
    chunks, done = sse_json(r.content)
    assert done
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


def test_models_and_embeddings(http: httpx.Client, sim: Simulator) -> None:
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [*sim.profile.models, *sim.profile.embed_models]
    r = http.post("/v1/embeddings", json={"model": "sim-embed", "input": ["the cat sat", "a dog ran"]})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "sim-embed"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in body["data"])
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    # The openai client asks for base64 by default: little-endian float32.
    b64 = http.post(
        "/v1/embeddings", json={"model": "sim-embed", "input": "the cat sat", "encoding_format": "base64"}
    ).json()
    vec = array("f", base64.b64decode(b64["data"][0]["embedding"]))
    assert [round(v, 5) for v in vec] == [round(v, 5) for v in body["data"][0]["embedding"]]


def test_openai_sdk_parses_stream(sim: Simulator) -> None:
    openai = __import__("openai")
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key="sim", max_retries=0)
    stream = client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        max_tokens=6,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    client.close()


def test_ids_differ_between_requests(http: httpx.Client) -> None:
    a = http.post("/v1/chat/completions", json=chat_body(max_tokens=1)).json()["id"]
    b = http.post("/v1/chat/completions", json=chat_body(max_tokens=1)).json()["id"]
    assert a != b
    assert orjson.loads(orjson.dumps(a)) == a
