"""Request bodies, non-streaming replies and error bodies, for both protocols (pure functions)."""

from __future__ import annotations

import pytest

from workbench._exceptions import MalformedStreamError, ServerStreamError
from workbench._types import Request
from workbench.protocols import build_request, parse_completion, parse_error_body


def test_ollama_chat_body_maps_sampling_to_options() -> None:
    req = Request.chat(
        "llama3", "hi", system="be brief", temperature=0.2, top_p=0.9, seed=7, max_tokens=50,
        stop=("\n\n",), tools=({"type": "function", "function": {"name": "f"}},),
        options={"num_ctx": 4096, "keep_alive": "5m"},
    )
    p = build_request("ollama", req)
    assert (p.method, p.path) == ("POST", "/api/chat")
    assert p.body["stream"] is True
    assert p.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert p.body["options"] == {
        "temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 50, "stop": ["\n\n"], "num_ctx": 4096,
    }
    assert p.body["keep_alive"] == "5m", "Ollama top-level keys stay top-level"
    assert p.body["tools"][0]["function"]["name"] == "f"


def test_ollama_generate_body() -> None:
    p = build_request("ollama", Request.completion("m", "once upon"), stream=False)
    assert p.path == "/api/generate" and p.body == {"model": "m", "stream": False, "prompt": "once upon"}


def test_openai_chat_body_top_level_fields_and_usage() -> None:
    req = Request.chat("gpt", "hi", temperature=0.0, max_tokens=5, seed=1, stop=("x",), options={"logprobs": True})
    p = build_request("openai", req)
    assert p.path == "/v1/chat/completions"
    assert p.body["stream_options"] == {"include_usage": True}
    assert {k: p.body[k] for k in ("temperature", "max_tokens", "seed", "stop", "logprobs")} == {
        "temperature": 0.0, "max_tokens": 5, "seed": 1, "stop": ["x"], "logprobs": True,
    }
    assert "options" not in p.body
    no_usage = build_request("openai", Request.chat("gpt", "hi", include_usage=False))
    assert "stream_options" not in no_usage.body
    assert "stream_options" not in build_request("openai", req, stream=False).body


def test_openai_completion_body() -> None:
    p = build_request("openai", Request.completion("m", "abc", top_p=0.5))
    assert p.path == "/v1/completions" and p.body["prompt"] == "abc" and p.body["top_p"] == 0.5


def test_parse_completion_both_protocols() -> None:
    o = parse_completion("ollama", b'{"message":{"role":"assistant","content":"hey"},"done":true,'
                         b'"done_reason":"stop","eval_count":2,"prompt_eval_count":3,"eval_duration":9}')
    assert (o.text, o.finish_reason, o.usage and o.usage.completion_tokens) == ("hey", "stop", 2)
    assert o.server["eval_duration"] == 9
    g = parse_completion("ollama", b'{"response":"gen","done":true}')
    assert g.text == "gen"
    a = parse_completion("openai", b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"yo"},'
                         b'"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":4}}')
    assert (a.text, a.finish_reason, a.usage and a.usage.completion_tokens) == ("yo", "length", 4)
    c = parse_completion("openai", b'{"choices":[{"text":"t","finish_reason":"stop"}]}')
    assert c.text == "t"
    with pytest.raises(MalformedStreamError):
        parse_completion("openai", b"<html>")
    with pytest.raises(ServerStreamError, match="bad things"):
        parse_completion("ollama", b'{"error":"bad things"}')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":"model \\"x\\" not found, try pulling it first"}', 'model "x" not found, try pulling it first'),
        (b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit"}}',
         "Rate limit reached (requests, rate_limit)"),
        (b'{"detail":"Not Found"}', "Not Found"),
        (b"404 page not found", "404 page not found"),
        (b"", ""),
    ],
)
def test_parse_error_body(body: bytes, message: str) -> None:
    assert parse_error_body(body) == message
