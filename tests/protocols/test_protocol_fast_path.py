"""The fast parsers' batch path (msgspec over a whole read) must decide exactly as their per-line orjson path.

Each case is parsed twice, with the batch path on and switched off (the per-line path alone is the
reference), from one read and from reads cut at every byte, and events and errors must be identical.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from protocol_wire_samples import SAMPLES, ollama_chat, openai_chat, run, wire_samples

from workbench._exceptions import MalformedStreamError, ServerStreamError
from workbench._types import ProtocolName, StreamEvent, TextDelta
from workbench.protocols import ollama, openai

GOOD_O = [b'{"model":"m","message":{"role":"assistant","content":"t%d"},"done":false}' % i for i in range(6)]
GOOD_A = [b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"t%d"}}]}\n\n' % i for i in range(6)]
DONE_O = b'{"model":"m","message":{"content":"!"},"done":true,"done_reason":"stop","eval_count":7}'
FIRST_A = b'data: {"id":"c","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'


def _ollama(*middle: bytes) -> bytes:
    return b"\n".join([*GOOD_O[:3], *middle, *GOOD_O[3:], DONE_O]) + b"\n"


def _openai(*middle: bytes) -> bytes:
    return FIRST_A + b"".join([*GOOD_A[:3], *middle, *GOOD_A[3:]]) + b"data: [DONE]\n\n"


CASES: dict[str, tuple[ProtocolName, bytes]] = {
    # values that span a line break, or share a line: msgspec's decode_lines would accept both
    "o_value_spans_lines": ("ollama", _ollama(b'{"message":{"content":"a"},"done":', b"false}")),
    "o_two_values_one_line": ("ollama", _ollama(b'{"message":{"content":"a"}} {"message":{"content":"b"}}')),
    "o_blank_and_space_lines": ("ollama", _ollama(b"", b"   ", b"\t")),
    "o_crlf": ("ollama", _ollama().replace(b"\n", b"\r\n")),
    "o_content_not_str": ("ollama", _ollama(b'{"message":{"content":5},"done":false}')),
    "o_message_not_object": ("ollama", _ollama(b'{"message":"x","response":"r","done":false}')),
    "o_message_null_uses_response": ("ollama", _ollama(b'{"message":null,"response":"r","done":false}')),
    "o_generate": ("ollama", _ollama(b'{"response":"g","done":false}', b'{"response":"","done":false}')),
    "o_empty_content": ("ollama", _ollama(b'{"message":{"content":""},"done":false}')),
    "o_error_null": ("ollama", _ollama(b'{"error":null}')),
    "o_error_text": ("ollama", _ollama(b'{"error":"boom"}')),
    "o_not_object": ("ollama", _ollama(b"[1,2]")),
    "o_bad_utf8_unread_field": ("ollama", _ollama(b'{"model":"\xff","message":{"content":"a"},"done":false}')),
    "o_utf8_text": ("ollama", _ollama('{"message":{"content":"日本🎉"},"done":false}'.encode())),
    "o_done_mid_read": ("ollama", _ollama(DONE_O)),
    "o_done_null": ("ollama", _ollama(b'{"message":{"content":"a"},"done":null}')),
    "o_duplicate_key": ("ollama", _ollama(b'{"message":{"content":"a"},"message":{"content":"b"}}')),
    "o_trailing_garbage": ("ollama", _ollama(b'{"message":{"content":"a"}}x')),
    "a_multiline_data": ("openai", _openai(b'data: {"choices":[{"delta":\ndata: {"content":"m"}}]}\n\n')),
    "a_payload_holds_lf": ("openai", _openai(b'data: {"choices":[{"delta":\n{"content":"m"}}]}\n\n')),
    "a_comment_and_fields": ("openai", _openai(b": ping\n\n", b"event: x\nid: 3\n\n")),
    "a_no_space": ("openai", _openai(b'data:{"choices":[{"delta":{"content":"n"}}]}\n\n')),
    "a_empty_payload": ("openai", _openai(b"data: \n\n")),
    "a_blank_payload": ("openai", _openai(b"data:  \n\n")),
    "a_usage_chunk": ("openai", _openai(b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n')),
    "a_finish_reason": ("openai", _openai(b'data: {"choices":[{"delta":{},"finish_reason":"length"}]}\n\n')),
    "a_completion_text": ("openai", _openai(b'data: {"choices":[{"text":"c"}]}\n\n')),
    "a_error_null": ("openai", _openai(b'data: {"error":null,"choices":[{"delta":{"content":"e"}}]}\n\n')),
    "a_error_object": ("openai", _openai(b'data: {"error":{"message":"boom"}}\n\n')),
    "a_content_not_str": ("openai", _openai(b'data: {"choices":[{"delta":{"content":7}}]}\n\n')),
    "a_two_values_one_payload": ("openai", _openai(b'data: {"choices":[]} {"choices":[]}\n\n')),
    "a_bad_utf8_unread_field": ("openai", _openai(b'data: {"model":"\xc3","choices":[]}\n\n')),
    "a_utf8_cut_between_payloads": ("openai", _openai(b'data: {"choices":[]}\xc3\n\n', b'data: \xa9{"choices":[]}\n\n')),
    "a_done_mid_read": ("openai", FIRST_A + GOOD_A[0] + b"data: [DONE]\n\n" + GOOD_A[1]),
    "a_no_id_first": ("openai", b"".join(GOOD_A).replace(b'"id":"c",', b"") + b"data: [DONE]\n\n"),
    "a_cr_line_ends": ("openai", _openai().replace(b"\n", b"\r")),
    # reasoning, tool calls, several choices, and their odd types
    "o_thinking": ("ollama", _ollama(b'{"message":{"content":"","thinking":"hm"},"done":false}')),
    "o_generate_thinking": ("ollama", _ollama(b'{"response":"","thinking":"hm","done":false}')),
    "o_thinking_not_str": ("ollama", _ollama(b'{"message":{"content":"a","thinking":3},"done":false}')),
    "o_tool_calls": ("ollama", _ollama(
        b'{"message":{"content":"","tool_calls":[{"function":{"name":"f","arguments":{"x":1}}}]},"done":false}')),
    "o_tool_calls_null": ("ollama", _ollama(b'{"message":{"content":"a","tool_calls":null},"done":false}')),
    "o_tool_calls_not_list": ("ollama", _ollama(b'{"message":{"content":"a","tool_calls":{"x":1}},"done":false}')),
    "o_tool_name_not_str": ("ollama", _ollama(b'{"message":{"tool_calls":[{"function":{"name":1}}]},"done":false}')),
    "a_reasoning_content": ("openai", _openai(b'data: {"choices":[{"delta":{"reasoning_content":"r"}}]}\n\n')),
    "a_reasoning": ("openai", _openai(b'data: {"choices":[{"delta":{"reasoning":"r","content":"c"}}]}\n\n')),
    "a_both_reasoning_fields": ("openai", _openai(
        b'data: {"choices":[{"delta":{"reasoning_content":"r","reasoning":"r"}}]}\n\n')),
    "a_reasoning_not_str": ("openai", _openai(b'data: {"choices":[{"delta":{"reasoning":["r"]}}]}\n\n')),
    "a_tool_calls": ("openai", _openai(
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function",'
        b'"function":{"name":"f","arguments":""}}]}}]}\n\n',
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}\n\n')),
    "a_tool_calls_object": ("openai", _openai(
        b'data: {"choices":[{"delta":{"tool_calls":{"index":0,"id":"","function":{"name":null,"arguments":"{"}}}}]}\n\n')),
    "a_tool_args_object": ("openai", _openai(
        b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":{"x":1}}}]}}]}\n\n')),
    "a_tool_id_int": ("openai", _openai(b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":7}]}}]}\n\n')),
    "a_tool_not_object": ("openai", _openai(b'data: {"choices":[{"delta":{"tool_calls":[3]}}]}\n\n')),
    "a_tool_calls_empty": ("openai", _openai(b'data: {"choices":[{"delta":{"content":"c","tool_calls":[]}}]}\n\n')),
    "a_choice_1": ("openai", _openai(b'data: {"choices":[{"index":1,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n')),
    "a_two_choices": ("openai", _openai(
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"text":"b"}]}\n\n')),
    "a_index_negative": ("openai", _openai(b'data: {"choices":[{"index":-1,"delta":{"content":"n"}}]}\n\n')),
    "a_index_bool": ("openai", _openai(b'data: {"choices":[{"index":true,"delta":{"content":"n"}}]}\n\n')),
    "a_choices_not_list": ("openai", _openai(b'data: {"choices":{"delta":{"content":"x"}}}\n\n')),
    "a_choice_not_object": ("openai", _openai(b'data: {"choices":["x"]}\n\n')),
    "a_delta_not_object": ("openai", _openai(b'data: {"choices":[{"delta":"x"}]}\n\n')),
    "a_finish_not_str": ("openai", _openai(b'data: {"choices":[{"delta":{},"finish_reason":1}]}\n\n')),
    "a_usage_not_object": ("openai", _openai(b'data: {"choices":[],"usage":3}\n\n')),
    "a_timings": ("openai", _openai(b'data: {"choices":[],"timings":{"prompt_ms":1.5}}\n\n')),
    "a_timings_not_object": ("openai", _openai(b'data: {"choices":[],"timings":[1]}\n\n')),
}


def _both(protocol: ProtocolName, reads: list[bytes]) -> tuple[object, object]:
    fast = run(protocol, reads, fast=True)
    saved = ollama._decode, openai._decode
    ollama._decode = openai._decode = None
    try:
        ref = run(protocol, reads, fast=True)
    finally:
        ollama._decode, openai._decode = saved
    return _comparable(fast), _comparable(ref)


def _comparable(out: tuple[list[StreamEvent], Exception | None]) -> tuple[list[StreamEvent], str | None]:
    events, err = out
    return events, None if err is None else f"{type(err).__name__}: {err}"


def test_the_batch_path_is_installed() -> None:
    assert ollama._decode is not None and openai._decode is not None, "msgspec is missing: fast path is off"


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_path_equals_per_line_path(name: str) -> None:
    protocol, wire = CASES[name]
    fast, ref = _both(protocol, [wire])
    assert fast == ref
    for i in range(0, len(wire) + 1, 7):
        fast, ref = _both(protocol, [wire[:i], wire[i:]])
        assert fast == ref, i


def test_framing_surprises_are_reported_at_the_offending_line() -> None:
    protocol, wire = CASES["o_value_spans_lines"]
    events, err = run(protocol, [wire], fast=True)
    assert isinstance(err, MalformedStreamError) and '"done":' in str(err)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["t0", "t1", "t2"]
    _, err = run("ollama", [CASES["o_error_null"][1]], fast=True)
    assert isinstance(err, ServerStreamError)  # `"error": null` is an error object all the same
    _, err = run("openai", [CASES["a_payload_holds_lf"][1]], fast=True)
    assert isinstance(err, MalformedStreamError)  # the second line is no `data:` field: the payload is cut


def test_long_reads_take_the_batch_path_and_keep_order(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"w{i} " for i in range(3000)]
    for protocol, wire, module in (("ollama", ollama_chat(texts), ollama), ("openai", openai_chat(texts), openai)):
        decoded: list[bytes] = []
        real = module._decode
        assert real is not None

        def counting(b: bytes, real: Callable[[bytes], object] = real, decoded: list[bytes] = decoded) -> object:
            decoded.append(b)
            return real(b)

        monkeypatch.setattr(module, "_decode", counting)
        reads = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
        events, err = run(protocol, reads, fast=True)  # type: ignore[arg-type]
        assert err is None
        assert len(decoded) > 2500, "most chunks went through the batch path"
        assert [e.text for e in events if isinstance(e, TextDelta)] == texts
        stamps = [e.t_ns for e in events]
        assert stamps == sorted(stamps)


JUNK = [b"\n", b"\r", b"\r\n", b" ", b"{", b"}", b'"', b",", b"\xff", b"\xc3", b"data: ", b": c\n", b"\n\n",
        b'{"error":"boom"}\n', b'data: {"error":{"message":"m"}}\n\n', b'{"message":{"content":5}}\n',
        b"[1]\n", b'{"done":true}\n', b"data: [DONE]\n\n", b"data: \n\n", b'{"message":null,"response":"r"}\n',
        b'"index":1', b'"reasoning":', b'"tool_calls":', b'"thinking":', b"null", b"[]", b"{}", b"7"]


@pytest.mark.parametrize("name", sorted(wire_samples()))
def test_batch_path_equals_per_line_path_on_server_bodies(name: str) -> None:
    protocol, wire, _ = wire_samples()[name]
    for i in range(0, len(wire) + 1, 5):
        fast, ref = _both(protocol, [wire[:i], wire[i:]])
        assert fast == ref, i


POOL: dict[str, tuple[ProtocolName, bytes]] = {
    **SAMPLES,
    **{name: (protocol, body) for name, (protocol, body, _) in wire_samples().items()},
}


def test_batch_path_equals_per_line_path_on_mutated_streams() -> None:
    rng = random.Random(11)
    names = sorted(POOL)
    for _ in range(600):
        protocol, wire = POOL[rng.choice(names)]
        w = bytearray(wire)
        for _ in range(rng.randint(0, 3)):
            op, pos = rng.random(), rng.randint(0, len(w))
            if op < 0.5:
                w[pos:pos] = rng.choice(JUNK)
            elif op < 0.8:
                del w[pos : pos + rng.randint(1, 3)]
            elif w:
                w[min(pos, len(w) - 1)] = rng.randrange(256)
        data = bytes(w)
        cuts = sorted(rng.sample(range(len(data) + 1), k=rng.randint(0, 4)))
        reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        fast, ref = _both(protocol, reads)
        assert fast == ref, reads
