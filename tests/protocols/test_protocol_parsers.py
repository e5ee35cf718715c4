"""Parser tests on wire samples, for both protocols and both parser implementations (fast and baseline)."""

from __future__ import annotations

import random

import pytest
from protocol_wire_samples import SAMPLES, TEXTS, ollama_chat, openai_chat, run, shape, text_of

from workbench._exceptions import MalformedStreamError, ServerStreamError, TruncatedStreamError
from workbench._types import DoneEvent, ProtocolName, TextDelta, UsageEvent

IMPLS = pytest.mark.parametrize("fast", [True, False], ids=["fast", "baseline"])
NAMES = pytest.mark.parametrize("name", sorted(SAMPLES))


@IMPLS
@NAMES
def test_whole_stream_in_one_read(name: str, fast: bool) -> None:
    protocol, wire = SAMPLES[name]
    events, err = run(protocol, [wire], fast=fast)
    assert err is None
    assert all(ev.t_ns == 0 for ev in events), "several events in one read all carry that read's stamp"
    assert isinstance(events[-1], DoneEvent)
    expected = "".join(TEXTS) + (" end" if name.endswith("done_text") else "")
    assert text_of(events) == expected


@IMPLS
@NAMES
def test_split_at_every_byte_offset(name: str, fast: bool) -> None:
    protocol, wire = SAMPLES[name]
    whole = shape(run(protocol, [wire], fast=fast)[0])
    for i in range(len(wire) + 1):
        events, err = run(protocol, [wire[:i], wire[i:]], fast=fast)
        assert err is None, (i, err)
        assert shape(events) == whole, i
        stamps = [ev.t_ns for ev in events]
        assert stamps == sorted(stamps) and set(stamps) <= {0, 1}, i
        # an event is stamped with the read that completed it: the done marker ends in the 2nd read
        # unless the split is at the very end
        assert events[-1].t_ns == (0 if i == len(wire) else 1), i


@IMPLS
@NAMES
def test_one_byte_per_read(name: str, fast: bool) -> None:
    protocol, wire = SAMPLES[name]
    reads = [wire[i : i + 1] for i in range(len(wire))]
    events, err = run(protocol, reads, fast=fast)
    assert err is None
    assert shape(events) == shape(run(protocol, [wire], fast=fast)[0])
    # each text event is stamped with the read that carried the last byte of its line / event
    text_stamps = [ev.t_ns for ev in events if isinstance(ev, TextDelta)]
    assert len(set(text_stamps)) == len(text_stamps)


# NDJSON lines end in LF (CRLF tolerated); a bare CR is an SSE line end only
EOL_CASES = [(n, b"\r\n") for n in sorted(SAMPLES)] + [(n, b"\r") for n in sorted(SAMPLES) if SAMPLES[n][0] == "openai"]


@IMPLS
@pytest.mark.parametrize(("name", "eol"), EOL_CASES, ids=[f"{n}-{e!r}" for n, e in EOL_CASES])
def test_crlf_and_cr_line_ends(name: str, fast: bool, eol: bytes) -> None:
    protocol, wire = SAMPLES[name]
    converted = wire.replace(b"\n", eol)
    whole = shape(run(protocol, [wire], fast=fast)[0])
    for i in range(len(converted) + 1):
        events, err = run(protocol, [converted[:i], converted[i:]], fast=fast)
        assert err is None, (i, err)
        assert shape(events) == whole, i


@IMPLS
@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_multibyte_utf8_split_across_reads(protocol: ProtocolName, fast: bool) -> None:
    texts = ["日本語", "🎉🎉", "ü"]
    wire = ollama_chat(texts) if protocol == "ollama" else openai_chat(texts)
    for pos in (wire.index("本".encode()) + 1, wire.index("🎉".encode()) + 2, wire.index("ü".encode()) + 1):
        events, err = run(protocol, [wire[:pos], wire[pos:]], fast=fast)
        assert err is None
        assert text_of(events) == "日本語🎉🎉ü"


@IMPLS
def test_openai_role_only_and_usage_only_chunks(fast: bool) -> None:
    events, err = run("openai", [openai_chat(["a", "b"])], fast=fast)
    assert err is None
    kinds = [type(ev).__name__ for ev in events]
    # role-only first chunk gives no TextDelta; the usage-only chunk (choices: []) gives a UsageEvent
    assert kinds == ["TextDelta", "TextDelta", "UsageEvent", "DoneEvent"]
    usage = events[2]
    assert isinstance(usage, UsageEvent) and usage.usage.completion_tokens == 2
    done = events[3]
    assert isinstance(done, DoneEvent) and done.finish_reason == "stop"


@IMPLS
def test_ollama_done_chunk_with_text_and_server_figures(fast: bool) -> None:
    events, err = run("ollama", [ollama_chat(["a"], final_text="Z")], fast=fast)
    assert err is None
    assert [type(e).__name__ for e in events] == ["TextDelta", "TextDelta", "UsageEvent", "DoneEvent"]
    assert isinstance(events[1], TextDelta) and events[1].text == "Z"
    assert isinstance(events[2], UsageEvent) and events[2].usage.completion_tokens == 2
    done = events[3]
    assert isinstance(done, DoneEvent) and done.finish_reason == "stop"
    assert done.server == {
        "created_at": "2024-01-01T00:00:01Z", "total_duration": 5_000_000, "load_duration": 1_000,
        "prompt_eval_count": 7, "prompt_eval_duration": 2_000, "eval_count": 2, "eval_duration": 3_000,
    }


ERROR_LINES = {
    "ollama": b'{"error":"model runner crashed"}\n',
    "openai": b'data: {"error":{"message":"model runner crashed","type":"server_error"}}\n\n',
}


@IMPLS
@pytest.mark.parametrize("protocol", ["ollama", "openai"])
@pytest.mark.parametrize("same_read", [True, False])
def test_error_object_mid_stream(protocol: ProtocolName, fast: bool, same_read: bool) -> None:
    wire = ollama_chat(["a", "b"]) if protocol == "ollama" else openai_chat(["a", "b"])
    cut = wire.index(b'"b"') + 5
    cut = wire.index(b"\n\n" if protocol == "openai" else b"\n", cut) + (2 if protocol == "openai" else 1)
    head = wire[:cut]
    reads = [head + ERROR_LINES[protocol]] if same_read else [head, ERROR_LINES[protocol]]
    events, err = run(protocol, reads, fast=fast)
    assert isinstance(err, ServerStreamError)
    assert "model runner crashed" in str(err)
    assert text_of(events) == "ab", "text before the error is kept"


MALFORMED = {
    "ollama": b'{"message":{"content":"x"},"done":fals}\n',
    "openai": b'data: {"choices":[{"delta":{"content":"x"}}]\n\n',
}


@IMPLS
@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_malformed_chunk(protocol: ProtocolName, fast: bool) -> None:
    wire = ollama_chat(["a"]) if protocol == "ollama" else openai_chat(["a"])
    first = wire.index(b'"a"')
    first = wire.index(b"\n\n" if protocol == "openai" else b"\n", first) + (2 if protocol == "openai" else 1)
    events, err = run(protocol, [wire[:30], wire[30:first], MALFORMED[protocol] + wire[first:]], fast=fast)
    assert isinstance(err, MalformedStreamError)
    assert "malformed" in str(err) and repr(MALFORMED[protocol].decode().strip()[-25:])[1:-1] in str(err), str(err)
    assert text_of(events) == "a"
    long = b'{"x":"' + b"y" * 5000 + b'"'  # the offending bytes are truncated in the message
    _, err2 = run(protocol, [(long + b"\n") if protocol == "ollama" else b"data: " + long + b"\n\n"], fast=fast)
    assert isinstance(err2, MalformedStreamError) and len(str(err2)) < 600


@IMPLS
@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_truncated_stream(protocol: ProtocolName, fast: bool) -> None:
    wire = ollama_chat(["a", "b"]) if protocol == "ollama" else openai_chat(["a", "b"])
    end = wire.rindex(b"done" if protocol == "ollama" else b"[DONE]")
    for cut in (end - 3, wire.index(b'"b"') + 8):
        events, err = run(protocol, [wire[:cut]], fast=fast)
        assert isinstance(err, TruncatedStreamError), (cut, err)
        assert "ab".startswith(text_of(events)) and text_of(events)
    # clean close on a line boundary without the end marker
    boundary = wire.index(b"\n", wire.index(b'"b"')) + 1
    events, err = run(protocol, [wire[:boundary]], fast=fast)
    assert isinstance(err, TruncatedStreamError)
    assert text_of(events) == "ab"


def test_sse_no_space_multiline_and_bom() -> None:
    wire = b'\xef\xbb\xbfdata:{"choices":[{"delta":\ndata: {"content":"hi"}}]}\n\ndata:[DONE]\n\n'
    for fast in (True, False):
        events, err = run("openai", [wire], fast=fast)
        assert err is None and text_of(events) == "hi", fast


def test_fast_and_baseline_agree_on_random_splits() -> None:
    rng = random.Random(7)
    for protocol, wire in SAMPLES.values():
        for eol in (b"\n", b"\r\n"):
            data = wire.replace(b"\n", eol)
            for _ in range(40):
                cuts = sorted(rng.sample(range(1, len(data)), k=rng.randint(1, 12)))
                reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
                fast_ev, fast_err = run(protocol, reads, fast=True)
                base_ev, base_err = run(protocol, reads, fast=False)
                if protocol == "ollama" and eol == b"\r\n":
                    # iter_lines ends a line at the CR, the byte framer at the LF: stamps may differ by a read
                    assert shape(fast_ev) == shape(base_ev)
                else:
                    assert fast_ev == base_ev
                assert fast_err is None and base_err is None
