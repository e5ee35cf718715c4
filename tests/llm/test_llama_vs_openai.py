"""The workbench's TTFT and ITL against the official `openai` client's, on the real llama.cpp server.

Both clients send the same chat prompts in the same run, interleaved: round one alternates the clients prompt
by prompt, round two gives each prompt to the other client. Every prompt differs from the one before it, so
llama.cpp's prompt cache (it keeps only the previous prompt) never favours either side: both evaluate every
prompt from the same state (the chat template's shared first tokens), which also makes greedy decoding give
the same tokens to both. The openai client's chunks are stamped as they come out of its iterator and counted
the same way (chunks carrying content); its send is stamped by an httpx request hook (see `SendStamp`).

The judged figures are the medians over the same prompt set: TTFT within 10 % (the server's prompt
processing dominates it; a client that stamps late or sends slowly shows up here), ITL within 10 %, and the
token count of every prompt equal. One more attempt is made when the first misses a timing bar, since a
neighbouring process on a 2-core machine can disturb a few requests; both attempts are printed.
"""

from __future__ import annotations

import time
from itertools import pairwise
from statistics import median
from typing import Any

import httpx
import openai
import pytest

from workbench import Client, Optimizations, Request
from workbench.llm import LlamaServer

pytestmark = pytest.mark.extras

MAX_TOKENS = 12
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 11}
PROMPTS = [
    "Apples grow on trees in the orchard behind the old farmhouse.",
    "Bicycles are a cheap way to get around a crowded city.",
    "Clouds drift slowly over the hills on a summer afternoon.",
    "Dolphins swim in groups and talk to each other with clicks.",
    "Every library has a quiet corner where people read for hours.",
    "Fresh bread from the bakery smells wonderful in the morning.",
    "Glaciers carve deep valleys as they move down the mountains.",
    "Harbours fill with fishing boats when a storm is coming.",
    "Islands in the north are covered with snow for half the year.",
    "Jazz musicians often improvise long solos on a simple theme.",
]


class SendStamp:
    """httpx request hook: stamps the moment the openai client hands its request to httpx.

    The workbench stamps `sent` at the same point (body built, request handed to httpx), so both TTFTs
    cover the same interval: send -> first content chunk in the caller's hands. The openai client's own
    request preparation (parameter validation, headers, JSON) before that point is reported separately.
    """

    def __init__(self) -> None:
        self.t_ns = 0

    def __call__(self, request: httpx.Request) -> None:
        self.t_ns = time.perf_counter_ns()


def _openai_stream(
    oc: openai.OpenAI, sent: SendStamp, model: str, prompt: str
) -> tuple[float, list[float], int]:
    t0 = time.perf_counter_ns()
    sent.t_ns = 0
    stream = oc.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    stamps: list[int] = []
    for chunk in stream:
        t = time.perf_counter_ns()
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(t)
    assert stamps and sent.t_ns > t0, "the openai client received no content"
    itl = [(b - a) / 1e6 for a, b in pairwise(stamps)]
    return (stamps[0] - sent.t_ns) / 1e6, itl, len(stamps), (sent.t_ns - t0) / 1e6


def _workbench_stream(client: Client, model: str, prompt: str) -> tuple[float, list[float], int, float]:
    r = client.run(Request.chat(model, prompt, max_tokens=MAX_TOKENS, **GREEDY))
    assert r.ok and r.metrics.ttft_ms is not None, r.error
    assert r.metrics.tokens_source == "chunks"
    return r.metrics.ttft_ms, list(r.metrics.itl_ms), r.metrics.output_tokens, 0.0


def _measure(server: LlamaServer) -> dict[str, Any]:
    runs: dict[str, dict[str, tuple[float, list[float], int, float]]] = {"workbench": {}, "openai": {}}
    sent = SendStamp()
    http = httpx.Client(timeout=60, event_hooks={"request": [sent]})
    oc = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, http_client=http)
    with Client(server.backend(), optimizations=Optimizations(connection_pool=True)) as client:
        # warm-up: connections open, first-call costs paid, cache state = some other chat prompt
        _workbench_stream(client, server.model, "Warm up the workbench client.")
        _openai_stream(oc, sent, server.model, "Warm up the openai client.")
        for rnd in range(2):
            for i, prompt in enumerate(PROMPTS):
                side = "workbench" if (i + rnd) % 2 == 0 else "openai"
                if side == "workbench":
                    runs[side][prompt] = _workbench_stream(client, server.model, prompt)
                else:
                    runs[side][prompt] = _openai_stream(oc, sent, server.model, prompt)
    oc.close()
    http.close()
    out: dict[str, Any] = {"runs": runs}
    for side, by_prompt in runs.items():
        out[f"{side}_ttft_ms"] = median(v[0] for v in by_prompt.values())
        out[f"{side}_itl_ms"] = median(g for v in by_prompt.values() for g in v[1])
    out["openai_prepare_ms"] = median(v[3] for v in runs["openai"].values())
    return out


def _report(m: dict[str, Any], attempt: int) -> str:
    w, o = m["workbench_ttft_ms"], m["openai_ttft_ms"]
    wi, oi = m["workbench_itl_ms"], m["openai_itl_ms"]
    return (
        f"attempt {attempt}: median TTFT workbench {w:.2f} ms, openai {o:.2f} ms ({(w / o - 1) * 100:+.1f} %); "
        f"median ITL workbench {wi:.2f} ms, openai {oi:.2f} ms ({(wi / oi - 1) * 100:+.1f} %); "
        f"openai's request preparation before the send {m['openai_prepare_ms']:.2f} ms"
    )


def test_ttft_and_itl_match_the_official_openai_client(llama_server: LlamaServer) -> None:
    lines: list[str] = []
    for attempt in (1, 2):
        m = _measure(llama_server)
        lines.append(_report(m, attempt))
        # token counts are decided by the model, not by the timing: they must match on every attempt
        for prompt in PROMPTS:
            wb, oa = m["runs"]["workbench"][prompt], m["runs"]["openai"][prompt]
            assert wb[2] == oa[2], f"{prompt!r}: workbench counted {wb[2]} tokens, openai client {oa[2]}"
            assert len(wb[1]) == len(oa[1]) == wb[2] - 1
        ttft_ok = abs(m["workbench_ttft_ms"] / m["openai_ttft_ms"] - 1) <= 0.10
        itl_ok = abs(m["workbench_itl_ms"] / m["openai_itl_ms"] - 1) <= 0.10
        if ttft_ok and itl_ok:
            break
    print("\n" + "\n".join(lines))
    assert ttft_ok, "median TTFT differs from the openai client's by more than 10 %:\n" + "\n".join(lines)
    assert itl_ok, "median ITL differs from the openai client's by more than 10 %:\n" + "\n".join(lines)
