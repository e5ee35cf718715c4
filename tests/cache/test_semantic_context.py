"""Context-safe semantic hits: a stored answer is served for a paraphrase only when everything but the last user
message is identical (system prompt, earlier turns, model, sampling parameters, backend, namespace).

Each case stores one answer through a real `ResponseCache` with the default `SemanticTier` (static embedder,
trap guard), then looks up a paraphrase of the stored question, and also the identical question, in another
context: neither may hit. The same paraphrase in the same context must hit, or the test proves nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from _cache_helpers import build_result

from workbench._types import Message, Request
from workbench.cache import ResponseCache, partition_key, request_key
from workbench.cache.semantic import SemanticTier

SYSTEM = "You are a helpful assistant for a leisure centre."
QUESTION = "What time does the swimming pool open on Saturdays?"
PARAPHRASE = "what time does the swimming pool open on saturdays please"
HISTORY = (Message("user", "Hi, I'm a member at the Leeds branch."), Message("assistant", "Welcome back!"))


def _request(last: str, *, system: str = SYSTEM, history: tuple[Message, ...] = HISTORY, **kw: Any) -> Request:
    msgs = (Message("system", system), *history, Message("user", last))
    return Request(model=kw.pop("model", "sim-small"), messages=msgs, temperature=0, **kw)


@pytest.fixture
def cache() -> ResponseCache:
    c = ResponseCache(semantic=SemanticTier())
    stored = _request(QUESTION)
    assert c.store(stored, build_result(stored), backend="http://a")
    return c


def test_same_context_paraphrase_hits(cache: ResponseCache) -> None:
    hit = cache.lookup(_request(PARAPHRASE), backend="http://a")
    assert hit is not None and hit.kind == "semantic" and hit.matched_prompt == QUESTION


OTHER_CONTEXTS: dict[str, tuple[dict[str, Any], str]] = {
    "system prompt": ({"system": "You are a helpful assistant for a hotel."}, "http://a"),
    "earlier turns": ({"history": (Message("user", "I'm a member at the York branch."),
                                   Message("assistant", "Welcome back!"))}, "http://a"),
    "no earlier turns": ({"history": ()}, "http://a"),
    "model": ({"model": "sim-large"}, "http://a"),
    "max_tokens": ({"max_tokens": 12}, "http://a"),
    "seed": ({"seed": 7}, "http://a"),
    "options": ({"options": {"num_ctx": 2048}}, "http://a"),
    "backend": ({}, "http://b"),
}


@pytest.mark.parametrize("what", list(OTHER_CONTEXTS))
@pytest.mark.parametrize("text", [PARAPHRASE, QUESTION])
def test_another_context_never_hits(cache: ResponseCache, what: str, text: str) -> None:
    kwargs, backend = OTHER_CONTEXTS[what]
    request = _request(text, **kwargs)
    assert cache.lookup(request, backend=backend) is None
    assert cache.semantic_counters.snapshot()["hits"] == 0


def test_other_namespace_never_hits(cache: ResponseCache) -> None:
    other = ResponseCache(namespace="team-b", semantic=cache.semantic)  # the same semantic index, shared
    assert other.lookup(_request(PARAPHRASE), backend="http://a") is None
    assert other.lookup(_request(QUESTION), backend="http://a") is None


def test_partition_is_everything_but_the_last_user_message() -> None:
    base = _request(QUESTION)
    # only the last user message differs: same partition, different key
    assert partition_key(base) == partition_key(_request(PARAPHRASE))
    assert request_key(base) != request_key(_request(PARAPHRASE))
    changed = [
        _request(QUESTION, system="other"),
        _request(QUESTION, history=()),
        _request(QUESTION, model="m2"),
        _request(QUESTION, max_tokens=5),
        replace(base, temperature=0.5, seed=1),
        replace(base, top_p=0.9),
        replace(base, stop=("\n",)),
        replace(base, tools=({"type": "function", "function": {"name": "f"}},)),
        replace(base, include_usage=False),
    ]
    keys = {partition_key(r) for r in changed}
    assert partition_key(base) not in keys and len(keys) == len(changed)
    assert partition_key(base, backend="x") != partition_key(base, backend="y")
    assert partition_key(base, namespace="x") != partition_key(base, namespace="y")
