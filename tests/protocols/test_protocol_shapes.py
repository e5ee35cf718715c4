"""Every wrong shape is MalformedStreamError naming the field, the text before it kept, in both parser modes alike;
fuzzed: both modes give the same verdict (same events, same exception type) on the same mutated bytes."""

from __future__ import annotations

import random

import pytest
from protocol_wire_samples import SAMPLES, run, shape, text_of, wire_samples

from workbench._exceptions import MalformedStreamError
from workbench._types import ProtocolName

IMPLS = pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])

O_HEAD = b'{"model":"m","message":{"role":"assistant","content":"He"},"done":false}\n'
O_TAIL = b'{"model":"m","message":{"content":""},"done":true,"done_reason":"stop","eval_count":2}\n'
A_HEAD = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"He"}}]}\n\n'
A_TAIL = b"data: [DONE]\n\n"

# name -> (protocol, offending line / payload, the words the error must hold)
WRONG: dict[str, tuple[ProtocolName, bytes, str]] = {
    "o_content_int": ("ollama", b'{"message":{"content":5},"done":false}', "message.content is int 5, expected a string"),
    "o_content_list": ("ollama", b'{"message":{"content":["x"]},"done":false}', "message.content is list"),
    "o_thinking_obj": ("ollama", b'{"message":{"content":"","thinking":{}},"done":false}', "message.thinking is object"),
    "o_response_int": ("ollama", b'{"response":1,"done":false}', "response is int 1"),
    "o_message_str": ("ollama", b'{"message":"hi","done":false}', "message is str 'hi', expected an object"),
    "o_tool_calls_obj": ("ollama", b'{"message":{"tool_calls":{"a":1}},"done":false}', "message.tool_calls is object"),
    "o_tool_fn_list": ("ollama", b'{"message":{"tool_calls":[{"function":[]}]},"done":false}',
                       "message.tool_calls[0].function is list"),
    "o_eval_count_str": ("ollama", b'{"message":{"content":""},"done":true,"eval_count":"7"}', "eval_count is str '7'"),
    "o_bad_utf8": ("ollama", b'{"message":{"content":"\xff"},"done":false}', "UTF-8"),
    "a_content_int": ("openai", b'data: {"choices":[{"delta":{"content":5}}]}\n\n',
                      "choices[0].delta.content is int 5, expected a string"),
    "a_content_list": ("openai", b'data: {"choices":[{"delta":{"content":[{"type":"text"}]}}]}\n\n',
                       "choices[0].delta.content is list"),
    "a_choices_dict": ("openai", b'data: {"choices":{"0":{"delta":{"content":"x"}}}}\n\n', "choices is object"),
    "a_delta_int": ("openai", b'data: {"choices":[{"delta":5}]}\n\n', "choices[0].delta is int 5, expected an object"),
    "a_usage_int": ("openai", b'data: {"choices":[],"usage":7}\n\n', "usage is int 7, expected an object"),
    "a_usage_count_str": ("openai", b'data: {"choices":[],"usage":{"prompt_tokens":"9"}}\n\n',
                          "usage.prompt_tokens is str '9', expected an integer"),
    "a_text_int": ("openai", b'data: {"choices":[{"text":3}]}\n\n', "choices[0].text is int 3"),
    "a_second_choice": ("openai", b'data: {"choices":[{"delta":{}},{"index":1,"delta":{"reasoning":2}}]}\n\n',
                        "choices[1].delta.reasoning is int 2"),
    "a_tool_calls_int": ("openai", b'data: {"choices":[{"delta":{"tool_calls":4}}]}\n\n',
                         "choices[0].delta.tool_calls is int 4, expected a list"),
    "a_tool_name_int": ("openai", b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":1}}]}}]}\n\n',
                        "choices[0].delta.tool_calls[0].function.name is int 1"),
    "a_finish_int": ("openai", b'data: {"choices":[{"delta":{},"finish_reason":1}]}\n\n',
                     "choices[0].finish_reason is int 1"),
    "a_bad_utf8": ("openai", b'data: {"choices":[{"delta":{"content":"\xc3("}}]}\n\n', "UTF-8"),
}


def _body(protocol: ProtocolName, middle: bytes) -> bytes:
    if protocol == "ollama":
        return O_HEAD + middle + b"\n" + O_TAIL
    return A_HEAD + middle + A_TAIL


@IMPLS
@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_shape_names_the_field_and_keeps_the_text(name: str, fast: bool) -> None:
    protocol, middle, words = WRONG[name]
    wire = _body(protocol, middle)
    for reads in ([wire], [wire[i : i + 1] for i in range(len(wire))], [wire[:-3], wire[-3:]]):
        events, err = run(protocol, reads, fast=fast)
        assert isinstance(err, MalformedStreamError), (reads, err)
        assert words in str(err), str(err)
        assert text_of(events) == "He", "the text before the offending chunk is kept"
        assert all(type(getattr(e, "text", "")) is str for e in events)


POOL: dict[str, tuple[ProtocolName, bytes]] = {
    **SAMPLES,
    **{name: (protocol, body) for name, (protocol, body, _) in wire_samples().items()},
    **{f"wrong_{name}": (p, _body(p, middle)) for name, (p, middle, _) in WRONG.items()},
}
# what a mutation inserts: framing, JSON of every type, and bytes that are no UTF-8
JUNK = [b"\n", b"\r\n", b"\r", b"\n\n", b":", b": ping\n", b"data: ", b"data:", b"{", b"}", b"[", b"]", b'"', b",",
        b"5", b"-1", b"1e999", b"null", b"true", b"[]", b"{}", b'"x"', b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf",
        b'"content":', b'"choices":', b'"delta":', b'"usage":', b'"message":', b'"done":true', b'"error":"e"',
        b"data: [DONE]\n\n", b'"tool_calls":', b'"thinking":', b'"reasoning":', b'"index":', b"\t", b" "]


def _verdict(protocol: ProtocolName, reads: list[bytes], fast: bool) -> tuple[object, str | None]:
    events, err = run(protocol, reads, fast=fast)
    return shape(events), None if err is None else type(err).__name__


def test_both_modes_give_the_same_verdict_on_mutated_streams() -> None:
    rng = random.Random(1107)
    names = sorted(POOL)
    for _ in range(1500):
        protocol, wire = POOL[rng.choice(names)]
        w = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.random(), rng.randint(0, len(w))
            if op < 0.45:
                w[pos:pos] = rng.choice(JUNK)
            elif op < 0.7:
                del w[pos : pos + rng.randint(1, 8)]
            elif op < 0.85 and w:
                w[min(pos, len(w) - 1)] = rng.randrange(256)
            else:
                # swap a JSON scalar for another type
                w[:] = bytes(w).replace(rng.choice([b'"He"', b'"stop"', b"0", b"false", b'"assistant"']),
                                        rng.choice([b"5", b"[]", b"{}", b"null", b'"s"', b"true"]), 1)
        data = bytes(w)
        cuts = sorted(rng.sample(range(len(data) + 1), k=rng.randint(0, 5)))
        reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        fast, base = _verdict(protocol, reads, True), _verdict(protocol, reads, False)
        assert fast == base, (protocol, reads)
