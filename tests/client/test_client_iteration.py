"""Stream iteration (generator fast path), lazily built `StreamResult.chunks`, NamedTuple events."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator

import httpx
import pytest

from workbench import Backend, ChunkRecord, Request, TextDelta
from workbench.client import AsyncClient, Client

LINES = [b'{"message":{"content":"t%d"},"done":false}\n' % i for i in range(50)]
BODY = b"".join(LINES) + b'{"message":{"content":""},"done":true,"eval_count":50}\n'


class _Reads(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The body in reads of ten lines each, so one read yields several events."""

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(LINES), 10):
            yield b"".join(LINES[i : i + 10])
        yield BODY[len(b"".join(LINES)) :]

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for block in self:
            yield block


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=_Reads())


def _client() -> Client:
    return Client(Backend("http://llm.test", protocol="ollama"), transport=httpx.MockTransport(_handler))


def _texts(events: object) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]  # type: ignore[attr-defined]


def test_loop_left_early_resumes_with_next_and_a_second_loop() -> None:
    with _client() as c, c.stream(Request.chat("m", "hi")) as s:
        got = []
        for ev in s:
            got.append(ev)
            if len(got) == 3:  # in the middle of the first read's ten events
                break
        got.append(next(s))
        got.extend(s)
        assert _texts(got) == [f"t{i}" for i in range(50)]
        r = s.result
    assert r.ok and r.text == "".join(f"t{i}" for i in range(50))


async def test_async_loop_left_early_resumes() -> None:
    transport = httpx.MockTransport(_handler)
    async with AsyncClient(Backend("http://llm.test", protocol="ollama"), transport=transport) as c:
        async with c.stream(Request.chat("m", "hi")) as s:
            got = []
            async for ev in s:
                got.append(ev)
                if len(got) == 3:
                    break
            got.extend([ev async for ev in s])
        assert _texts(got) == [f"t{i}" for i in range(50)]
        assert s.result.ok and len(s.result.chunks) == 50


def test_result_chunks_are_built_on_first_read_and_behave_as_a_list() -> None:
    with _client() as c:
        r = c.run(Request.chat("m", "hi"))
    chunks = r.chunks
    assert type(chunks) is list and len(chunks) == 50 and r.chunks is chunks  # built once
    assert all(type(ch) is ChunkRecord for ch in chunks)
    assert [ch.text for ch in chunks] == [f"t{i}" for i in range(50)]
    stamps = [ch.t_ns for ch in chunks]
    assert stamps == sorted(stamps) and stamps[0] == r.sent_ns + round(r.metrics.ttft_ms * 1e6)  # type: ignore[operator]
    assert len(r.metrics.itl_ms) == 49
    r.chunks = [*chunks, ChunkRecord(stamps[-1] + 1, "x")]  # assignment, as tests and tools do
    assert len(r.chunks) == 51


def test_result_with_lazy_chunks_pickles_copies_and_compares() -> None:
    with _client() as c:
        a = c.run(Request.chat("m", "hi"))
        b = c.run(Request.chat("m", "hi"))
    back = pickle.loads(pickle.dumps(a))
    assert back.chunks == a.chunks and back.text == a.text
    assert dataclasses.replace(a).chunks == a.chunks
    assert len(dataclasses.asdict(a)["chunks"]) == 50
    assert a != b  # different stamps


def test_events_are_immutable_named_tuples() -> None:
    ev = TextDelta(text="a", t_ns=5)
    assert ev == TextDelta("a", 5) and ev.text == "a" and ev.t_ns == 5 and TextDelta("a").t_ns == 0
    with pytest.raises(AttributeError):
        ev.text = "b"  # type: ignore[misc]
    rec = ChunkRecord(1, "x")
    assert rec.n_bytes == 0
    with pytest.raises(AttributeError):
        rec.t_ns = 2  # type: ignore[misc]
