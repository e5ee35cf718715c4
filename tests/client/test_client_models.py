"""Model listing (`list_models`, `default_model`) against the real simulator, and its errors; the request
headers a strict server checks; reasoning, tool-call and n > 1 streams through the client end to end."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from workbench import Backend, ConfigError, ConnectError, NotFoundError, Request, ToolCall
from workbench.client import AsyncClient, Client
from workbench.client._shared import pick_model
from workbench.simulator import Profile, Simulator

WIRE = Path(__file__).parents[1] / "protocols" / "wire"


@pytest.fixture(scope="module")
def named_sim() -> Iterator[Simulator]:
    # an embedding model listed first: the default passes over it
    with Simulator(Profile.instant(models=("nomic-embed-text", "alpha-chat", "beta-chat"))) as s:
        yield s


@pytest.mark.parametrize("protocol", ["ollama", "openai", "auto"])
def test_list_models_sync_and_async(named_sim: Simulator, protocol: str) -> None:
    backend = Backend(named_sim.url, protocol=protocol)  # type: ignore[arg-type]
    with Client(backend) as c:
        names = c.list_models()
        assert names[:3] == ["nomic-embed-text", "alpha-chat", "beta-chat"]
        assert c.default_model() == "alpha-chat"
        r = c.run(Request.chat(c.default_model(), "hi", max_tokens=3))
        assert r.ok and r.request.model == "alpha-chat"

    async def go() -> tuple[list[str], str]:
        async with AsyncClient(backend) as ac:
            return await ac.list_models(), await ac.default_model()

    import asyncio

    assert asyncio.run(go()) == (names, "alpha-chat")


def test_pick_model_rules() -> None:
    assert pick_model(["a", "b"]) == "a"
    assert pick_model(["text-embedding-3-small", "gpt-4o-mini"]) == "gpt-4o-mini"
    assert pick_model(["nomic-embed-text"]) == "nomic-embed-text"  # nothing else: the first of all


def _mock(body: bytes, status: int = 200, protocol: str = "openai") -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    return Client(Backend("http://llm.test:1", protocol=protocol), transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_list_models_errors_say_what_to_do() -> None:
    with _mock(b'{"object":"list","data":[]}') as c, pytest.raises(ConfigError) as info:
        c.list_models()
    assert "lists no models" in str(info.value) and "--model" in str(info.value)
    with _mock(b'{"models":[]}', protocol="ollama") as c, pytest.raises(ConfigError, match="ollama pull"):
        c.default_model()
    with _mock(b"<html>hello</html>") as c, pytest.raises(ConfigError, match="did not answer with a model list"):
        c.list_models()
    with _mock(b'{"error":{"message":"Not Found"}}', status=404) as c, pytest.raises(NotFoundError) as nf:
        c.list_models()
    assert "/v1/models" in str(nf.value)
    # llama-cpp-python and Ollama spell their entries differently: both are read
    with _mock(b'{"object":"list","data":[{"id":"gemma","object":"model","owned_by":"me","permissions":[]}]}') as c:
        assert c.list_models() == ["gemma"]
    with _mock(b'{"models":[{"name":"qwen3:8b","model":"qwen3:8b","size":1},{"model":"x:1"}]}', protocol="ollama") as c:
        assert c.list_models() == ["qwen3:8b", "x:1"]


def test_list_models_on_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(Backend(f"http://127.0.0.1:{port}", protocol="openai")) as c, pytest.raises(ConnectError):
        c.list_models()


def test_the_request_id_header_is_a_bare_uuid_and_nothing_else_is_added() -> None:
    """What llama-cpp-python's starlette-context checks: X-Request-Id must parse as a UUID (else HTTP 400)."""
    seen: list[httpx.Request] = []
    body = (WIRE / "llamacpp_python_chat.sse").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with Client(Backend("http://llm.test:1", protocol="openai"), transport=httpx.MockTransport(handler)) as c:
        r = c.run(Request.chat("gemma3-270m", "hi"))
    rid = seen[0].headers["x-request-id"]
    assert rid == r.request.id and len(rid) == 32 and uuid.UUID(rid, version=4).hex == rid
    ours = {k for k in seen[0].headers if k not in ("host", "user-agent", "accept-encoding", "connection",
                                                     "content-length")}
    assert ours == {"accept", "content-type", "x-request-id"}
    assert r.ok and r.usage is None and r.metrics.tokens_source == "chunks" and r.metrics.output_tokens == 9


class _Parts(httpx.SyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts


def _serve(name: str) -> httpx.MockTransport:
    body = (WIRE / name).read_bytes()
    sep = b"\n\n" if name.endswith(".sse") else b"\n"
    parts = [p + sep for p in body.split(sep) if p]
    assert b"".join(parts) == body

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Parts(parts))  # one chunk per read, as a live stream arrives

    return httpx.MockTransport(handler)


def test_reasoning_and_tool_calls_reach_the_result() -> None:
    backend = Backend("http://llm.test:1", protocol="openai")
    with Client(backend, transport=_serve("vllm_chat_parallel_tool_calls.sse")) as c:
        r = c.run(Request.chat("Qwen/Qwen3-8B", "weather?"))
    assert r.ok and r.text == "" and r.reasoning.startswith("Two cities") and r.finish_reason == "tool_calls"
    assert [(t.index, t.name, t.arguments) for t in r.tool_calls] == [
        (0, "get_weather", '{"city": "Paris", "unit": "celsius"}'),
        (1, "get_weather", '{"city": "Berlin", "unit": "celsius"}'),
    ]
    m = r.metrics
    assert m.ttft_ms is not None and m.first_text_ms is None and m.output_tokens == 67
    kinds = [c.kind for c in r.chunks]
    assert kinds[:8] == ["reasoning"] * 8 and set(kinds[8:]) == {"tool_call"}


def test_several_choices_are_kept_apart_async() -> None:
    import asyncio

    async def go() -> tuple[str, list[tuple[int, str, str | None]]]:
        backend = Backend("http://llm.test:1", protocol="openai")
        async with AsyncClient(backend, transport=_async_serve("vllm_chat_n2.sse")) as c:
            r = await c.run(Request.chat("m", "hi", options={"n": 2}))
        return r.text, [(ch.index, ch.text, ch.finish_reason) for ch in r.choices]

    text, choices = asyncio.run(go())
    assert text == "Red sky at night."
    assert choices == [(0, "Red sky at night.", "stop"), (1, "Blue skies ahead, friend", "length")]


def _async_serve(name: str) -> httpx.MockTransport:
    body = (WIRE / name).read_bytes()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    return httpx.MockTransport(handler)


def test_non_streaming_reply_with_reasoning_tool_calls_and_choices() -> None:
    reply = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":['
        b'{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"think",'
        b'"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"x\\":1}"}}]},'
        b'"finish_reason":"tool_calls"},'
        b'{"index":1,"message":{"role":"assistant","content":"plain"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=reply)

    with Client(Backend("http://llm.test:1", protocol="openai"), transport=httpx.MockTransport(handler)) as c:
        r = c.complete(Request.chat("m", "hi", options={"n": 2}))
    assert r.ok and r.text == "" and r.reasoning == "think" and r.finish_reason == "tool_calls"
    assert r.tool_calls == [ToolCall(0, "call_1", "f", '{"x":1}')]
    assert [(c.index, c.text, c.finish_reason) for c in r.choices] == [(0, "", "tool_calls"), (1, "plain", "stop")]
    assert r.metrics.output_tokens == 9
