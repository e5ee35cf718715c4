"""The key format is frozen: keys live in disk and Redis tiers, so a faster `request_key` must hash the same
bytes. Golden values were produced by the first (unoptimised) implementation."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from workbench._types import Message, Request
from workbench.cache.key import key_dict, partition_key, request_key

CASES: list[tuple[Request, tuple[str, str, str]]] = [
    (
        Request.chat(
            "sim-small",
            "hi",
            system="s",
            options={"b": 1, "a": 2.0, "n": {"y": [1, 2.5], "x": None}},
            temperature=0.7,
            top_p=1.0,
            seed=3,
            max_tokens=5,
            stop=("\n",),
            tools=({"type": "function", "function": {"name": "f"}},),
        ),
        (
            "aacf9a667b5511844442dcfbc1c2d71b",
            "9b0601bec91468d7b266293aeed503dd",
            "0c2f1dc90d8f33068d68f994feef5ad3",
        ),
    ),
    (
        Request.chat(
            "sim-small",
            [Message("user", "a"), Message("assistant", "b"), Message("user", "c")],
            temperature=0.0,
        ),
        (
            "b080027a76f9a6cd58db46b13803ebe1",
            "6b202f3d634801e5d1cf33c1f436ce84",
            "dd08019bbe8ec642ff12436b48c472e8",
        ),
    ),
    (
        Request.completion("m", "abc", include_usage=False),
        (
            "9b9d5783b65605a5732a142b5de4ca36",
            "7c737c08d5ca405e26b281e0ac59a1d3",
            "431a693a5625726036ad49a54bffc5de",
        ),
    ),
]


@pytest.mark.parametrize(("request_", "golden"), CASES)
def test_keys_match_the_frozen_format(request_: Request, golden: tuple[str, str, str]) -> None:
    got = (
        request_key(request_),
        partition_key(request_),
        request_key(request_, namespace="n", backend="http://x"),
    )
    assert got == golden


@pytest.mark.parametrize("request_", [c[0] for c in CASES])
@pytest.mark.parametrize("partition", [False, True])
def test_key_is_blake2b_of_the_sorted_key_dict(request_: Request, partition: bool) -> None:
    # The fast path skips OPT_SORT_KEYS when nothing nested can be unsorted; the bytes must not change.
    d = key_dict(request_, namespace="ns", backend="b", partition=partition)
    want = hashlib.blake2b(orjson.dumps(d, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
    fn = partition_key if partition else request_key
    assert fn(request_, namespace="ns", backend="b") == want
    assert list(d) == sorted(d)


def test_float_normalisation_in_nested_options_and_subclasses() -> None:
    class Opts(dict[str, object]):
        pass

    a = Request.chat("m", "x", options={"p": 1.0, "l": (1.0, 2.5)}, temperature=1.0)
    b = Request.chat("m", "x", options=Opts(p=1, l=[1, 2.5]), temperature=1)
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key(Request.chat("m", "x", options={"p": 1.5}, temperature=1))
