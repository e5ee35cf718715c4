"""Fault injection knobs, set per request on one shared server (X-Sim-Fault / X-Sim-Override)."""

from __future__ import annotations

import itertools

import httpx
import orjson
import pytest
from simwire_helpers import chat_body, sse_payloads

from workbench.simulator import Profile, Simulator

OPENAI = ("/v1/chat/completions", chat_body(stream=True, max_tokens=10))
OLLAMA = ("/api/chat", chat_body(options={"num_predict": 10}))


def _read_raw(
    c: httpx.Client, path: str, body: dict[str, object], headers: dict[str, str]
) -> tuple[bytes, bool]:
    """Body bytes received, and whether the connection broke before the body ended."""
    got = bytearray()
    try:
        with c.stream("POST", path, json=body, headers=headers) as r:
            for part in r.iter_raw():
                got += part
    except httpx.RemoteProtocolError:
        return bytes(got), True
    return bytes(got), False


def _content_lines(proto: str, raw: bytes) -> list[bytes]:
    if proto == "openai":
        return [p for p in sse_payloads(raw) if b'"content":"' in p and b'"content":""' not in p]
    return [line for line in raw.split(b"\n") if b'"done":false' in line]


@pytest.mark.parametrize(("proto", "req"), [("openai", OPENAI), ("ollama", OLLAMA)])
def test_disconnect_after(
    http: httpx.Client, sim: Simulator, proto: str, req: tuple[str, dict[str, object]]
) -> None:
    rid = f"dc-{proto}"
    raw, broke = _read_raw(http, req[0], req[1], {"X-Sim-Fault": "disconnect_after=3", "X-Request-Id": rid})
    assert broke
    assert len(_content_lines(proto, raw)) == 3
    assert b"[DONE]" not in raw and b'"done":true' not in raw
    gt = sim.ground_truth(rid)
    assert gt.aborted and not gt.disconnected
    assert len(gt.token_emit_ns) == 3
    assert "disconnect" in gt.faults


@pytest.mark.parametrize("status", [500, 503, 429])
def test_error_status_before_first_chunk(http: httpx.Client, status: int) -> None:
    r = http.post("/api/chat", json=chat_body(), headers={"X-Sim-Fault": f"error_status={status}"})
    assert r.status_code == status and isinstance(r.json()["error"], str)
    r = http.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers={"X-Sim-Fault": f"error_status={status}"}
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == ("requests" if status == 429 else "server_error")


def test_error_status_on_embeddings(http: httpx.Client) -> None:
    r = http.post(
        "/v1/embeddings",
        json={"model": "sim-embed", "input": "x"},
        headers={"X-Sim-Fault": "error_status=503"},
    )
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


def test_stall_after(http: httpx.Client, sim: Simulator) -> None:
    http.post(
        "/api/chat",
        json=chat_body(options={"num_predict": 6}),
        headers={"X-Sim-Fault": "stall_after=2,stall_s=0.3", "X-Request-Id": "stall"},
    )
    t = sim.ground_truth("stall").token_emit_ns
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(t)]
    assert len(t) == 6
    assert gaps[1] >= 0.3  # between chunk 2 and 3
    assert max(gaps[:1] + gaps[2:]) < 0.1


@pytest.mark.parametrize(("proto", "req"), [("openai", OPENAI), ("ollama", OLLAMA)])
def test_malformed_after(http: httpx.Client, proto: str, req: tuple[str, dict[str, object]]) -> None:
    r = http.post(req[0], json=req[1], headers={"X-Sim-Fault": "malformed_after=2"})
    if proto == "openai":
        payloads = sse_payloads(r.content)
        assert payloads[-1] == b"[DONE]"
        units = payloads[:-1]
    else:
        units = r.content[:-1].split(b"\n")
    bad = []
    for i, u in enumerate(units):
        try:
            orjson.loads(u)
        except orjson.JSONDecodeError:
            bad.append(i)
    assert len(bad) == 1
    offset = 1 if proto == "openai" else 0  # the role chunk comes first
    assert bad[0] == 2 + offset
    assert len(_content_lines(proto, r.content)) == 10


@pytest.mark.parametrize(("proto", "req"), [("openai", OPENAI), ("ollama", OLLAMA)])
def test_truncate_after(http: httpx.Client, proto: str, req: tuple[str, dict[str, object]]) -> None:
    raw, broke = _read_raw(http, req[0], req[1], {"X-Sim-Fault": "truncate_after=4"})
    assert not broke  # the body ends cleanly...
    assert len(_content_lines(proto, raw)) == 4
    assert b"[DONE]" not in raw and b'"done":true' not in raw  # ...without the end marker


@pytest.mark.parametrize(("proto", "req"), [("openai", OPENAI), ("ollama", OLLAMA)])
def test_error_after(http: httpx.Client, proto: str, req: tuple[str, dict[str, object]]) -> None:
    r = http.post(req[0], json=req[1], headers={"X-Sim-Override": '{"error_after": 5}'})
    assert r.status_code == 200
    assert len(_content_lines(proto, r.content)) == 5
    if proto == "openai":
        last = orjson.loads(sse_payloads(r.content)[-1])
        assert set(last["error"]) == {"message", "type", "param", "code"}
    else:
        last = orjson.loads(r.content.rstrip(b"\n").split(b"\n")[-1])
        assert set(last) == {"error"} and isinstance(last["error"], str)


def test_fault_beyond_end_still_drops_end_marker(http: httpx.Client) -> None:
    raw, broke = _read_raw(http, *OLLAMA, {"X-Sim-Fault": "truncate_after=1000"})
    assert not broke and len(_content_lines("ollama", raw)) == 10 and b'"done":true' not in raw


def test_non_stream_disconnect(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/chat", json=chat_body(stream=False), headers={"X-Sim-Fault": "disconnect_after=0"})


def test_override_does_not_leak_to_next_request(http: httpx.Client) -> None:
    r = http.post(*OPENAI[:1], json=OPENAI[1], headers={"X-Sim-Fault": "truncate_after=1"})
    assert b"[DONE]" not in r.content
    r = http.post(*OPENAI[:1], json=OPENAI[1])
    assert r.content.endswith(b"data: [DONE]\n\n")


def test_profile_level_fault() -> None:
    with Simulator(Profile.instant(error_status=500)) as s, httpx.Client(base_url=s.url) as c:
        assert c.post("/api/chat", json=chat_body()).status_code == 500
        # A request can switch the server's fault off again.
        r = c.post("/api/chat", json=chat_body(stream=False), headers={"X-Sim-Fault": "error_status=none"})
        assert r.status_code == 200
