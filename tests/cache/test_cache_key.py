from __future__ import annotations

import subprocess
import sys

import pytest

from workbench._exceptions import ConfigError
from workbench._types import Message, Request
from workbench.cache import is_sampled, partition_key, request_key


def base(**kw: object) -> Request:
    args: dict[str, object] = {"system": "Be brief.", "temperature": 0.0, "max_tokens": 64}
    args.update(kw)
    prompt = args.pop("prompt", "What is a cache?")
    model = args.pop("model", "sim-small")
    return Request.chat(str(model), prompt, **args)  # type: ignore[arg-type]


def test_same_request_same_key_and_id_and_tags_ignored() -> None:
    a, b = base(), base(tags={"variant": "x"})
    assert a.id != b.id
    assert request_key(a) == request_key(b)
    assert len(request_key(a)) == 32


@pytest.mark.parametrize(
    "other",
    [
        base(model="sim-large"),
        base(system="Be verbose."),
        base(system=None),
        base(temperature=0.7),
        base(top_p=0.9),
        base(seed=1),
        base(max_tokens=65),
        base(stop=("\n",)),
        base(tools=({"type": "function", "function": {"name": "f"}},)),
        base(options={"num_ctx": 4096}),
        base(include_usage=False),
        base(prompt="What is a cachE?"),
        base(
            prompt=[
                Message("system", "Be brief."),
                Message("user", "Hi"),
                Message("assistant", "Hello"),
                Message("user", "What is a cache?"),
            ],
            system=None,
        ),
        Request.completion("sim-small", "What is a cache?", temperature=0.0, max_tokens=64),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other: Request) -> None:
    assert request_key(other) != request_key(base())


def test_earlier_turn_changes_key() -> None:
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Go on"},
    ]
    other = [dict(t) for t in turns]
    other[1]["content"] = "Hello!"
    assert request_key(Request.chat("m", turns)) != request_key(Request.chat("m", other))


def test_namespace_and_backend_change_key() -> None:
    r = base()
    keys = {
        request_key(r),
        request_key(r, namespace="a"),
        request_key(r, namespace="b"),
        request_key(r, backend="http://x"),
        request_key(r, namespace="a", backend="http://x"),
    }
    assert len(keys) == 5


def test_dict_key_order_and_number_spelling_do_not_matter() -> None:
    a = base(
        options={"num_ctx": 4096, "repeat_penalty": 1.0, "nested": {"x": 1, "y": [1, 2]}},
        tools=({"type": "function", "function": {"name": "f", "parameters": {"a": 1, "b": 2}}},),
    )
    b = base(
        options={"nested": {"y": [1, 2], "x": 1}, "repeat_penalty": 1, "num_ctx": 4096},
        tools=({"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"},),
    )
    assert request_key(a) == request_key(b)
    assert request_key(base(temperature=0)) == request_key(base(temperature=0.0))


def test_key_is_stable_across_processes() -> None:
    code = (
        "from workbench._types import Request; from workbench.cache import request_key;"
        "print(request_key(Request.chat('sim-small', 'hi', system='s', options={'b': 1, 'a': 2}), namespace='n'))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    here = request_key(Request.chat("sim-small", "hi", system="s", options={"a": 2, "b": 1}), namespace="n")
    assert outs == {here}


def test_non_plain_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        request_key(base(options={"x": object()}))
    with pytest.raises(ConfigError):
        request_key(base(options={"x": float("nan")}))


def test_partition_key_ignores_only_the_last_user_turn() -> None:
    a, b = base(prompt="What is a cache?"), base(prompt="Explain caching")
    assert partition_key(a) == partition_key(b)
    assert request_key(a) != request_key(b)
    assert partition_key(a) != request_key(a)
    for other in (base(model="sim-large"), base(system="x"), base(temperature=0.5), base(max_tokens=1)):
        assert partition_key(other) != partition_key(a)
    assert partition_key(a, namespace="t1") != partition_key(a, namespace="t2")
    conv1 = Request.chat(
        "m",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": "q1"},
        ],
    )
    conv2 = Request.chat(
        "m",
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": "q1"},
        ],
    )
    assert partition_key(conv1) != partition_key(conv2)
    c1, c2 = Request.completion("m", "abc"), Request.completion("m", "xyz")
    assert partition_key(c1) == partition_key(c2)


def test_is_sampled() -> None:
    assert not is_sampled(base(temperature=None))
    assert not is_sampled(base(temperature=0.0))
    assert is_sampled(base(temperature=0.7))
    assert not is_sampled(base(temperature=0.7, seed=3))
