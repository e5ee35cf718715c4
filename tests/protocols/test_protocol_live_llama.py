"""The wire suite's llama-cpp-python bodies against the live server (llm extra): what it sends today is read by
both parser modes to the same events, and is still shaped like the recorded bodies in wire/ (no usage, the
same fields), so a server upgrade that changes its wire format shows up here first. Also: `--model`'s
default, the first model the server lists, is a model this server serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from protocol_wire_samples import run, shape, wire_samples

from workbench import Client, Request, TextDelta

if TYPE_CHECKING:
    from workbench.llm import LlamaServer

pytestmark = pytest.mark.extras


def _keys(body: bytes) -> set[tuple[str, ...]]:
    """The field paths of every chunk (top level and choice level), values left out."""
    out: set[tuple[str, ...]] = set()
    for event in body.split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        obj = orjson.loads(event[6:])
        out |= {(k,) for k in obj}
        for ch in obj.get("choices") or []:
            out |= {("choices", k) for k in ch}
    return out


@pytest.mark.parametrize(
    ("path", "sample", "body"),
    [
        ("/v1/chat/completions", "llamacpp_python_captured_chat",
         {"messages": [{"role": "user", "content": "Say hi"}]}),
        ("/v1/completions", "llamacpp_python_captured_completion", {"prompt": "The capital of France is"}),
    ],
)
def test_live_body_reads_alike_in_both_modes_and_matches_the_recording(
    llama_server: LlamaServer, path: str, sample: str, body: dict[str, Any]
) -> None:
    req = {"model": llama_server.model, "stream": True, "max_tokens": 6, "temperature": 0, "seed": 7,
           "stream_options": {"include_usage": True}, **body}
    with httpx.stream("POST", llama_server.url + path, json=req, timeout=120) as resp:
        assert resp.status_code == 200
        live = b"".join(resp.iter_raw())
    fast, fast_err = run("openai", [live], fast=True)
    base, base_err = run("openai", [live], fast=False)
    assert fast_err is None and base_err is None and fast == base
    assert [e for e in fast if isinstance(e, TextDelta)], "the server sent text"
    assert not any(kind == "usage" for kind, *_ in shape(fast)), "llama-cpp-python sends no usage"
    recorded = wire_samples()[sample][1]
    assert _keys(live) == _keys(recorded)


def test_default_model_is_the_one_the_server_serves(llama_server: LlamaServer) -> None:
    with Client(llama_server.url) as client:
        assert client.list_models() == [llama_server.model]
        model = client.default_model()
        r = client.run(Request.chat(model, "Say hi", max_tokens=4, temperature=0))
    assert r.ok and r.request.model == llama_server.model and r.metrics.tokens_source == "chunks"
    assert r.metrics.output_tokens == len([c for c in r.chunks if c.is_output]) > 0
