"""Client unit tests over httpx.MockTransport: error mapping, headers, secrets, auto-detect, complete()."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from workbench import (
    Backend,
    ConfigError,
    ConnectError,
    MalformedStreamError,
    NotFoundError,
    Optimizations,
    Request,
    ServerStreamError,
    StatusError,
    TextDelta,
    TransportError,
    TruncatedStreamError,
    WorkbenchError,
)
from workbench.client import AsyncClient, Client

SECRET = "sk-test-SECRET-0123456789"
OLLAMA_OK = (
    b'{"message":{"role":"assistant","content":"Hel"},"done":false}\n'
    b'{"message":{"role":"assistant","content":"lo"},"done":false}\n'
    b'{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2,'
    b'"prompt_eval_count":4,"eval_duration":100}\n'
)
OPENAI_OK = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)
OLLAMA_HEAD = OLLAMA_OK[: OLLAMA_OK.index(b"\n") + 1]  # the first line: text "Hel"
OPENAI_HEAD = OPENAI_OK[: OPENAI_OK.index(b"\n\n", OPENAI_OK.index(b"Hel")) + 2]  # role chunk + "Hel"
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, protocol: str = "ollama", **kw: object) -> Client:
    backend = Backend("http://llm.test:1234", protocol=protocol, api_key=SECRET)  # type: ignore[arg-type]
    return Client(backend, transport=httpx.MockTransport(handler), **kw)  # type: ignore[arg-type]


def chat() -> Request:
    return Request.chat("m", "hi")


class _Chunks(httpx.SyncByteStream):
    """A body that yields chunks, then optionally fails like a dropped connection."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks, self.fail = chunks, fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail


def test_stream_sends_headers_body_and_yields_events() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_Chunks([OLLAMA_OK[:30], OLLAMA_OK[30:]]))

    req = Request.chat("m", "hi", temperature=0.1)
    with client_for(handler) as c, c.stream(req) as s:
        events = list(s)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo"]
    sent = seen[0]
    assert sent.url == "http://llm.test:1234/api/chat"
    assert sent.headers["x-request-id"] == req.id
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(sent.content)["options"] == {"temperature": 0.1}
    r = s.result
    assert r.status == "ok" and r.text == "Hello" and r.error is None and r.error_kind is None
    assert r.optimizations == Optimizations().as_dict()
    assert r.usage is not None and r.usage.completion_tokens == 2 and r.metrics.tokens_source == "usage"
    assert r.server["eval_duration"] == 100 and r.finish_reason == "stop"


@pytest.mark.parametrize("url", ["http://llm.test:1234", "http://llm.test:1234/v1", "http://llm.test:1234/v1/"])
def test_openai_url_with_or_without_v1(url: str) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, content=OPENAI_OK)

    c = Client(Backend(url, protocol="openai"), transport=httpx.MockTransport(handler))
    r = c.run(chat())
    assert paths == ["/v1/chat/completions"]
    assert r.text == "Hello" and r.finish_reason == "stop" and r.usage and r.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("protocol", "status", "body", "kind", "message"),
    [
        ("ollama", 404, b'{"error":"model \\"m\\" not found, try pulling it first"}', NotFoundError,
         'model "m" not found'),
        ("openai", 404, b'{"error":{"message":"The model `m` does not exist","type":"invalid_request_error"}}',
         NotFoundError, "The model `m` does not exist"),
        ("openai", 429, b'{"error":{"message":"Rate limit reached","type":"requests"}}', StatusError,
         "Rate limit reached"),
        ("ollama", 500, b'{"error":"llama runner process has terminated"}', StatusError, "llama runner"),
        ("openai", 502, b"<html>Bad gateway</html>", StatusError, "Bad gateway"),
        ("openai", 401, b'{"error":{"message":"Incorrect API key provided"}}', StatusError, "Incorrect API key"),
        ("ollama", 301, b"Moved Permanently", StatusError, "Moved Permanently"),
    ],
)
def test_status_errors_carry_server_message(
    protocol: str, status: int, body: bytes, kind: type[StatusError], message: str
) -> None:
    c = client_for(lambda r: httpx.Response(status, content=body), protocol)
    with pytest.raises(kind) as info:
        c.run(chat())
    err = info.value
    assert type(err) is kind and err.status_code == status
    assert message in err.server_message and message in str(err) and f"HTTP {status}" in str(err)
    assert err.result is not None and err.result.status == "error" and err.result.error_kind == kind.__name__
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_connect_error_message_and_no_secret() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    c = client_for(handler)
    with pytest.raises(ConnectError) as info:
        c.run(chat())
    text = str(info.value)
    assert "could not connect to http://llm.test:1234" in text and "is the server running?" in text
    assert SECRET not in text
    r = info.value.result
    assert r is not None and r.status == "error" and r.error_kind == "ConnectError"
    assert SECRET not in repr(r) and SECRET not in str(dataclasses.asdict(r))


def test_connection_dropped_mid_stream_is_truncated_with_partial_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        fail = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return httpx.Response(200, stream=_Chunks([OLLAMA_HEAD], fail=fail))

    with pytest.raises(TruncatedStreamError) as info:
        client_for(handler).run(chat())
    r = info.value.result
    assert r is not None and r.text == "Hel" and r.status == "error" and r.error_kind == "TruncatedStreamError"


@pytest.mark.parametrize("fast", [True, False])
def test_stream_faults_map_to_stream_errors(fast: bool) -> None:
    opts = Optimizations(fast_parse=fast)
    cases: list[tuple[str, bytes, type[WorkbenchError], str]] = [
        ("ollama", OLLAMA_HEAD + b'{"error":"out of memory"}\n', ServerStreamError, "out of memory"),
        ("ollama", OLLAMA_HEAD + b"{not json}\n", MalformedStreamError, "{not json}"),
        ("ollama", OLLAMA_HEAD, TruncatedStreamError, "done"),
        ("openai", OPENAI_HEAD + b'data: {"error":{"message":"overloaded"}}\n\n', ServerStreamError, "overloaded"),
        ("openai", OPENAI_HEAD + b"data: {oops\n\n", MalformedStreamError, "{oops"),
        ("openai", OPENAI_HEAD, TruncatedStreamError, "[DONE]"),
    ]
    for protocol, body, kind, needle in cases:
        c = client_for(lambda r, b=body: httpx.Response(200, content=b), protocol, optimizations=opts)  # type: ignore[misc]
        with pytest.raises(kind) as info:
            c.run(chat())
        assert needle in str(info.value), (protocol, str(info.value))
        r = info.value.result
        assert r is not None and r.text == "Hel", (protocol, kind, r and r.text)
        assert r.status == "error" and r.error_kind == kind.__name__


def test_events_before_a_mid_stream_error_are_still_yielded() -> None:
    body = OLLAMA_HEAD + b'{"error":"boom"}\n'
    got: list[str] = []
    with pytest.raises(ServerStreamError), client_for(lambda r: httpx.Response(200, content=body)).stream(chat()) as s:
        for ev in s:
            if isinstance(ev, TextDelta):
                got.append(ev.text)
    assert got == ["Hel"]


def test_api_key_never_in_repr_results_or_errors() -> None:
    c = client_for(lambda r: httpx.Response(200, content=OLLAMA_OK))
    assert SECRET not in repr(c) and SECRET not in repr(c.backend)
    r = c.run(chat())
    assert SECRET not in repr(r) and SECRET not in str(dataclasses.asdict(r))
    s = c.stream(chat())
    assert SECRET not in repr(s)


def test_complete_both_protocols() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["stream"] is False
        if request.url.path == "/api/chat":
            return httpx.Response(200, json={"message": {"role": "assistant", "content": "whole"}, "done": True,
                                             "done_reason": "stop", "eval_count": 1})
        return httpx.Response(200, json={"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    for protocol in ("ollama", "openai"):
        r = client_for(handler, protocol).complete(chat())
        assert r.status == "ok" and r.text == "whole" and r.finish_reason == "stop"
        assert r.usage is not None and r.usage.completion_tokens == 1
        assert r.metrics.ttft_ms is not None and len(r.chunks) == 1


def test_auto_detect() -> None:
    def ollama(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/version":
            return httpx.Response(200, json={"version": "0.5.7"})
        return httpx.Response(200, content=OLLAMA_OK)

    def openai(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(200, content=OPENAI_OK)
        return httpx.Response(404, json={"detail": "Not Found"})

    def neither(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="nothing here")

    assert client_for(ollama, "auto").protocol == "ollama"
    c = client_for(openai, "auto")
    assert c.run(chat()).protocol == "openai"
    with pytest.raises(ConfigError, match=r"could not tell which protocol .*HTTP 404"):
        client_for(neither, "auto").run(chat())

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ConnectError, match="is the server running"):
        _ = client_for(down, "auto").protocol


def test_result_before_end_and_closed_client() -> None:
    c = client_for(lambda r: httpx.Response(200, content=OLLAMA_OK))
    s = c.stream(chat())
    with pytest.raises(ConfigError):
        _ = s.result
    c.close()
    with pytest.raises(ConfigError, match="closed"):
        c.run(chat())


def test_other_transport_errors_map_to_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    with pytest.raises(TransportError, match="closed the connection before answering"):
        client_for(handler).run(chat())


async def test_async_twin_over_mock_transport() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/chat":
            if json.loads(request.content)["stream"] is False:
                return httpx.Response(200, json={"message": {"content": "all"}, "done": True, "eval_count": 1})
            return httpx.Response(200, content=OLLAMA_OK)
        return httpx.Response(404, json={"error": 'model "zzz" not found'})

    backend = Backend("http://llm.test:1234", protocol="ollama", api_key=SECRET)
    async with AsyncClient(backend, transport=httpx.MockTransport(handler)) as c:
        r = await c.run(chat())
        assert r.text == "Hello" and r.status == "ok" and seen[0].headers["x-request-id"] == r.request_id
        async with c.stream(chat()) as s:
            texts = [ev.text async for ev in s if isinstance(ev, TextDelta)]
        assert texts == ["Hel", "lo"] and s.result.ok
        r2 = await c.complete(Request.chat("m", "x"))
        assert r2.ok and r2.text == "all" and r2.usage and r2.usage.completion_tokens == 1
        bad = AsyncClient(Backend("http://llm.test:1234/v1", protocol="openai", api_key=SECRET),
                          transport=httpx.MockTransport(handler))
        with pytest.raises(NotFoundError) as info:
            await bad.run(chat())
        assert 'model "zzz" not found' in str(info.value) and SECRET not in str(info.value)
        assert SECRET not in repr(bad) and SECRET not in repr(info.value.result)


def test_leaving_after_the_done_event_is_not_a_cancel() -> None:
    c = client_for(lambda r: httpx.Response(200, content=OLLAMA_OK))
    with c.stream(chat()) as s:
        for ev in s:
            if type(ev).__name__ == "DoneEvent":
                break
    assert s.result.status == "ok" and s.result.text == "Hello"


def test_leaving_early_without_early_cancel_reads_to_the_end() -> None:
    body = OLLAMA_OK
    c = client_for(lambda r: httpx.Response(200, stream=_Chunks([body[:70], body[70:140], body[140:]])))
    with c.stream(chat()) as s:
        for _ in s:
            break
    r = s.result
    assert r.status == "cancelled" and r.text == "Hel"
    assert r.server["client_after_stop"]["chars"] == 2  # "lo" was read after the stop, and counted as waste
