"""Bad input gets each protocol's own error body and status."""

from __future__ import annotations

import httpx
import pytest
from simwire_helpers import chat_body


def test_unknown_model_ollama(http: httpx.Client) -> None:
    r = http.post("/api/chat", json={**chat_body(), "model": "x"})
    assert r.status_code == 404
    assert r.json() == {"error": 'model "x" not found, try pulling it first'}
    r = http.post("/api/generate", json={"model": "llama9", "prompt": "hi"})
    assert r.status_code == 404 and r.json() == {"error": 'model "llama9" not found, try pulling it first'}


def test_unknown_model_openai(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={**chat_body(), "model": "gpt-9"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert (
        err["type"] == "invalid_request_error" and err["code"] == "model_not_found" and err["param"] is None
    )
    assert "gpt-9" in err["message"]
    assert set(r.json()) == {"error"} and set(err) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed"])
def test_malformed_json_ollama(http: httpx.Client, path: str) -> None:
    r = http.post(path, content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": "invalid character 'n' looking for beginning of value"}
    r = http.post(path, content=b"")
    assert r.status_code == 400 and r.json() == {"error": "missing request body"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_malformed_json_openai(http: httpx.Client, path: str) -> None:
    r = http.post(path, content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "parse the JSON body" in err["message"]


def test_missing_messages_and_prompt(http: httpx.Client) -> None:
    r = http.post("/api/chat", json={"model": "sim-small"})
    assert r.status_code == 400 and r.json() == {"error": "messages is required"}
    r = http.post("/api/generate", json={"model": "sim-small"})
    assert r.status_code == 400 and r.json() == {"error": "prompt is required"}
    r = http.post("/v1/chat/completions", json={"model": "sim-small"})
    assert r.status_code == 400
    assert (
        r.json()["error"]["param"] == "messages" and r.json()["error"]["code"] == "missing_required_parameter"
    )
    r = http.post("/v1/completions", json={"model": "sim-small"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = http.post("/api/chat", json={"model": "sim-small", "messages": [{"content": 3}]})
    assert r.status_code == 400 and "messages[0]" in r.json()["error"]


def test_unknown_paths_and_methods(http: httpx.Client) -> None:
    r = http.post("/api/nope", json={})
    assert r.status_code == 404 and r.text == "404 page not found"
    r = http.post("/v1/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = http.get("/api/chat")
    assert r.status_code == 405 and isinstance(r.json()["error"], str)


def test_bad_override_is_a_400_in_protocol_shape(http: httpx.Client) -> None:
    r = http.post("/api/chat", json=chat_body(), headers={"X-Sim-Override": '{"no_such_knob": 1}'})
    assert r.status_code == 400 and "no_such_knob" in r.json()["error"]
    r = http.post("/v1/chat/completions", json=chat_body(), headers={"X-Sim-Override": "{bad json"})
    assert r.status_code == 400 and "X-Sim-Override" in r.json()["error"]["message"]
    r = http.post("/v1/chat/completions", json=chat_body(), headers={"X-Sim-Fault": "tokens_per_chunk=0"})
    assert r.status_code == 400 and "tokens_per_chunk" in r.json()["error"]["message"]


def test_error_responses_are_in_ground_truth(http: httpx.Client, sim: object) -> None:
    from workbench.simulator import Simulator

    assert isinstance(sim, Simulator)
    http.post("/v1/chat/completions", json={**chat_body(), "model": "nope"}, headers={"X-Request-Id": "e404"})
    gt = sim.ground_truth("e404")
    assert gt.status == 404 and gt.chunks_sent == 1 and gt.token_emit_ns == () and gt.finished
