"""StatusError says why: each HTTP status maps to a likely cause and what to check, most of all when the body
is empty or only restates the status (httpx.MockTransport: this is a unit test of the mapping)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from workbench import Backend, NotFoundError, Request, StatusError
from workbench._exceptions import http_status_error, retry_after_seconds
from workbench.client import AsyncClient, Client

SECRET = "sk-test-SECRET-0123456789"


def _raise(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> StatusError:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    # credentials in the URL travel as a header; no message may show them
    backend = Backend(f"http://user:{SECRET}@llm.test:1234", protocol="openai")
    with Client(backend, transport=httpx.MockTransport(handler)) as c, pytest.raises(StatusError) as info:
        c.run(Request.chat("m", "hi"))
    return info.value


@pytest.mark.parametrize(
    ("status", "cause", "check"),
    [
        (400, "the server rejected the request", "check --model"),
        (401, "wants credentials", "API key"),
        (403, "refused these credentials", "API key"),
        (404, "no such path or model", "check the URL"),
        (405, "does not take this method", "--protocol"),
        (415, "content type", "--protocol"),
        (422, "could not read the request body", "--protocol"),
        (429, "rate limiting", "fewer requests"),
        (500, "failed on its side", "server's logs"),
        (503, "unavailable or overloaded", "server's logs"),
    ],
)
def test_empty_body_names_the_likely_cause(status: int, cause: str, check: str) -> None:
    err = _raise(status)
    text = str(err)
    assert f"HTTP {status} with an empty body: " in text and cause in err.message and check in err.hint
    assert err.status_code == status and err.body_excerpt == "" and err.retry_after_s is None
    assert err.url == "http://llm.test:1234/v1/chat/completions" and SECRET not in text + err.url
    assert type(err) is (NotFoundError if status == 404 else StatusError)
    # the hint travels onto the result a benchmark row is made of
    assert err.result is not None and err.result.error == text and err.result.error_kind == type(err).__name__


@pytest.mark.parametrize(
    "body",
    [
        b"Bad Request",
        b"<html><head><title>400 Bad Request</title></head><body><center><h1>400 Bad Request"
        b"</h1></center><hr><center>nginx</center></body></html>",
        b'{"error": "Bad Request"}',
        b"null",
    ],
)
def test_a_body_that_only_restates_the_status_counts_as_no_explanation(body: bytes) -> None:
    err = _raise(400, body)
    assert "HTTP 400 with no explanation (body: " in err.message and "rejected the request" in err.message
    assert "check --model" in err.hint and err.body_excerpt == body.decode().strip()


def test_an_informative_body_is_quoted_and_bounded() -> None:
    err = _raise(400, b'{"error":{"message":"unknown field: foo"}}')
    assert err.message.endswith("returned HTTP 400: unknown field: foo") and "check --model" in err.hint
    long = _raise(500, b"x" * 100_000)
    assert len(long.body_excerpt) == 300 and len(str(long)) < 1000


def test_retry_after_is_exposed_in_seconds() -> None:
    err = _raise(429, headers={"Retry-After": "7"})
    assert err.retry_after_s == 7.0 and "retry after 7 s" in err.hint
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after_seconds(when) or 0) <= 120
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_async_client_and_model_listing_say_why_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400)

    async def go() -> tuple[StatusError, StatusError]:
        backend = Backend("http://llm.test:1234", protocol="openai")
        async with AsyncClient(backend, transport=httpx.MockTransport(handler)) as c:
            with pytest.raises(StatusError) as stream:
                await c.run(Request.chat("m", "hi"))
            with pytest.raises(StatusError) as listing:
                await c.list_models()
        return stream.value, listing.value

    stream, listing = asyncio.run(go())
    assert "POST http://llm.test:1234/v1/chat/completions returned HTTP 400 with an empty body" in str(stream)
    assert "GET http://llm.test:1234/v1/models returned HTTP 400 with an empty body" in str(listing)


def test_redirect_keeps_its_own_hint() -> None:
    err = http_status_error(
        301, method="GET", url="http://a/v1/models", body_text="", server_message="", location="https://a/"
    )
    assert "redirects to https://a/" in err.hint and err.status_code == 301
