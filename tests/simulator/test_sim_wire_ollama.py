"""Ollama wire format: NDJSON lines, the done object, defaults."""

from __future__ import annotations

import re

import httpx
from simwire_helpers import chat_body, ndjson

from workbench.simulator import Simulator

RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
DONE_FIELDS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def test_chat_streams_by_default(http: httpx.Client) -> None:
    r = http.post("/api/chat", json=chat_body("one two three", options={"num_predict": 4}))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(r.content)
    *content, done = lines
    assert len(content) == 4
    for line in content:
        assert list(line) == ["model", "created_at", "message", "done"]
        assert line["model"] == "sim-small" and line["done"] is False
        assert RFC3339_NANO.fullmatch(line["created_at"]), line["created_at"]
        assert line["message"]["role"] == "assistant"
    assert done["done"] is True and done["done_reason"] == "length"
    assert done["message"] == {"role": "assistant", "content": ""}
    assert DONE_FIELDS <= set(done)
    assert done["prompt_eval_count"] == 3 and done["eval_count"] == 4
    assert all(isinstance(done[k], int) and done[k] >= 0 for k in DONE_FIELDS)
    assert done["total_duration"] >= done["eval_duration"]
    assert RFC3339_NANO.fullmatch(done["created_at"])


def test_durations_are_nanoseconds(sim: Simulator) -> None:
    override = '{"ttft_ms": 40, "ttft_per_prompt_token_ms": 0, "token_delay_ms": 10, "jitter": 0}'
    with httpx.Client(base_url=sim.url) as c:
        r = c.post(
            "/api/chat",
            json=chat_body(options={"num_predict": 5}),
            headers={"X-Sim-Override": override},
        )
    done = ndjson(r.content)[-1]
    # 40 ms prefill, 4 gaps of 10 ms: nanoseconds, not ms or s.
    assert 35e6 <= done["prompt_eval_duration"] <= 400e6
    assert 35e6 <= done["eval_duration"] <= 400e6
    assert done["total_duration"] >= done["prompt_eval_duration"] + done["eval_duration"]


def test_chat_stream_false(http: httpx.Client) -> None:
    r = http.post("/api/chat", json=chat_body(stream=False, options={"num_predict": 6}))
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["done"] is True and body["done_reason"] == "length"
    assert len(body["message"]["content"].split(" ")) == 6
    assert DONE_FIELDS <= set(body)


def test_generate_stream_and_full(http: httpx.Client) -> None:
    lines = ndjson(
        http.post(
            "/api/generate", json={"model": "sim-small", "prompt": "why", "options": {"num_predict": 3}}
        ).content
    )
    assert [list(x)[:4] for x in lines[:-1]] == [["model", "created_at", "response", "done"]] * 3
    final = lines[-1]
    assert final["done"] is True and final["response"] == "" and final["done_reason"] == "length"
    streamed = "".join(x["response"] for x in lines[:-1])
    full = http.post(
        "/api/generate",
        json={"model": "sim-small", "prompt": "why", "stream": False, "options": {"num_predict": 3}},
    ).json()
    assert full["response"] == streamed and full["eval_count"] == 3


def test_default_length_done_reason_stop(http: httpx.Client) -> None:
    lines = ndjson(http.post("/api/chat", json=chat_body("default length please")).content)
    assert lines[-1]["done_reason"] == "stop"
    assert 48 <= lines[-1]["eval_count"] <= 160 and lines[-1]["eval_count"] == len(lines) - 1


def test_tags_version_root(http: httpx.Client, sim: Simulator) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.get("/api/version").json() == {"version": sim.profile.version}
    tags = http.get("/api/tags").json()
    names = [m["name"] for m in tags["models"]]
    assert names == [*sim.profile.models, *sim.profile.embed_models]
    assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(tags["models"][0])


def test_embed_str_and_list(http: httpx.Client) -> None:
    one = http.post("/api/embed", json={"model": "sim-embed", "input": "hello world"}).json()
    assert one["model"] == "sim-embed" and len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 384
    two = http.post("/api/embed", json={"model": "sim-small", "input": ["hello world", "other"]}).json()
    assert len(two["embeddings"]) == 2
    assert two["embeddings"][0] == one["embeddings"][0]
    assert two["prompt_eval_count"] == 3


def test_model_latest_tag_accepted(http: httpx.Client) -> None:
    r = http.post("/api/chat", json={**chat_body(stream=False), "model": "sim-small:latest"})
    assert r.status_code == 200 and r.json()["model"] == "sim-small:latest"


def test_ollama_sdk_parses_stream(sim: Simulator) -> None:
    ollama = __import__("ollama")
    client = ollama.Client(host=sim.url)
    parts = list(
        client.chat(
            model="sim-small",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            options={"num_predict": 5},
        )
    )
    assert parts[-1].done and parts[-1].eval_count == 5
    assert len("".join(p.message.content for p in parts).split()) == 5
