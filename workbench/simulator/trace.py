"""Timing traces recorded from a real server, and their replay by the simulator. Pure, no I/O but file reads.

A trace is a JSON Lines file: one header object, then one object per recorded request::

    {"format": "workbench-trace", "version": 1, "recorded_at": "2025-...Z", "model": "gemma-3-270m",
     "note": "llama.cpp ...", "n_requests": 20, "max_tokens": 48, "prompt_text": true, ...}
    {"prompt": "...", "prompt_chars": 77, "prompt_sha256": "...", "protocol": "openai", "endpoint": "chat",
     "ttft_ms": 55.2, "gaps_ms": [19.4, ...], "chunk_chars": [3, 7, ...], "chunk_tokens": [1, 1, ...],
     "finish_reason": "length", "output_tokens": 48, "tokens_source": "chunks"}

Per request it holds the prompt (or, recorded with `--no-prompt-text`, only its length and SHA-256), the time
to the first token chunk, every gap between token chunks, each chunk's text length and token count, the
finish reason, the output token count, protocol and endpoint. Nothing else: no output text, no URL, no
header, no key (`workbench record` writes it; `workbench.experiments.record` is its Python API).

Replay (`Profile(trace=...)`, `workbench serve --trace FILE`): each request is matched to a recorded one by
its prompt (the full prompt text, or the last message's content, compared by SHA-256, so a trace without
prompt text still matches), else a recorded request is picked by a hash of (seed, model, prompt), so the
same request always gets the same recording whatever the arrival order. The stream then carries the
recorded number of chunks with the recorded text lengths (simulated words cut to length) and token counts
(in usage), the first one `ttft_ms` after the request arrived (plus any queueing or load the profile adds)
and each next one a recorded gap later. A request whose `max_tokens` is below the recorded output stops there
with finish reason `length`; cold start, queueing and faults of the profile still apply.

Timing: replays wake on a sub-millisecond timer thread (`timer.py`; the event loop's own timer quantizes
gaps to whole milliseconds), and aim each first chunk early by how late recent first chunks went out
(`Lateness`), so a client sees the recorded TTFT plus only its own network path. Recorded through loopback
and replayed through loopback, that path counts twice: about 1 ms on this kind of machine, ~1.5% of
llama.cpp's TTFT here; replayed and recorded again, medians come back within 5%
(tests/simulator/test_trace_replay.py). What a replay does not model: a server's prompt cache (llama.cpp
reuses the previous prompt's KV cache, so a prompt sent twice in a row answers faster the second time).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from workbench.simulator.text import TokenStream

__all__ = [
    "FORMAT",
    "SHIPPED_TRACE",
    "TRACES_DIR",
    "VERSION",
    "Lateness",
    "Replay",
    "ReplayChunks",
    "Trace",
    "TraceError",
    "TraceRecord",
    "plan_replay",
    "prompt_sha256",
    "spread_tokens",
]

FORMAT = "workbench-trace"
VERSION = 1
# Traces shipped with the source checkout (data/traces next to the package), e.g. SHIPPED_TRACE:
# llama.cpp serving Gemma 3 270M Q4_K_M on a 2-core CPU, 20 requests of 48 tokens.
TRACES_DIR = Path(__file__).resolve().parents[2] / "data" / "traces"
SHIPPED_TRACE = TRACES_DIR / "llamacpp-gemma3-270m.jsonl"
_MS = 1_000_000
# The only fields a record may carry: a trace never holds more than its documented content.
_RECORD_FIELDS = frozenset(
    {
        "prompt",
        "prompt_chars",
        "prompt_sha256",
        "protocol",
        "endpoint",
        "ttft_ms",
        "gaps_ms",
        "chunk_chars",
        "chunk_tokens",
        "finish_reason",
        "output_tokens",
        "tokens_source",
    }
)


class TraceError(ValueError):
    """A trace file or value is not a valid workbench trace (the message names the file and line)."""


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def spread_tokens(output_tokens: int, chunk_chars: Sequence[int]) -> tuple[int, ...]:
    """Token count per chunk when the server counted `output_tokens` over `len(chunk_chars)` chunks.

    One per chunk when the counts agree (llama.cpp and Ollama send one token a chunk); otherwise the total is
    shared out in proportion to each chunk's text length (largest remainder), every chunk keeping at least one
    token while there are enough, so the counts always add up to `output_tokens`.
    """
    n = len(chunk_chars)
    if n == 0:
        return ()
    if output_tokens == n:
        return (1,) * n
    if output_tokens < n:
        return tuple(1 if i < output_tokens else 0 for i in range(n))
    extra = output_tokens - n
    weights = [max(c, 1) for c in chunk_chars]
    total = sum(weights)
    shares = [extra * w / total for w in weights]
    out = [1 + int(s) for s in shares]
    left = output_tokens - sum(out)
    by_remainder = sorted(range(n), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[:left]:
        out[i] += 1
    return tuple(out)


def _num(d: Mapping[str, Any], name: str, where: str, *, optional: bool = False) -> float | None:
    v = d.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise TraceError(f"{where}: {name!r} must be a number >= 0, got {v!r}")
    return float(v)


def _ints(d: Mapping[str, Any], name: str, where: str) -> tuple[int, ...]:
    v = d.get(name)
    ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    if not ok or not isinstance(v, list):
        raise TraceError(f"{where}: {name!r} must be a list of integers >= 0")
    return tuple(v)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One recorded request: its prompt (or length and hash), first-token time, gaps and chunking."""

    ttft_ms: float | None  # None when the response carried no token chunk at all
    gaps_ms: tuple[float, ...]
    chunk_chars: tuple[int, ...]
    chunk_tokens: tuple[int, ...]
    output_tokens: int
    finish_reason: str | None = None
    protocol: str = "openai"
    endpoint: str = "chat"
    prompt_sha256: str = ""
    prompt_chars: int = 0
    prompt: str | None = None
    tokens_source: str = "chunks"

    def __post_init__(self) -> None:
        n = len(self.chunk_chars)
        if len(self.chunk_tokens) != n:
            raise TraceError(f"chunk_tokens has {len(self.chunk_tokens)} entries for {n} chunks")
        if len(self.gaps_ms) != max(n - 1, 0):
            raise TraceError(f"gaps_ms has {len(self.gaps_ms)} entries for {n} chunks (need one fewer)")
        if n and self.ttft_ms is None:
            raise TraceError("a record with chunks needs ttft_ms")
        if any(g < 0 for g in self.gaps_ms) or (self.ttft_ms is not None and self.ttft_ms < 0):
            raise TraceError("ttft_ms and gaps_ms must be >= 0")
        if self.prompt is not None and not self.prompt_sha256:
            object.__setattr__(self, "prompt_sha256", prompt_sha256(self.prompt))

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_chars)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.prompt is not None:
            d["prompt"] = self.prompt
        d |= {
            "prompt_chars": self.prompt_chars,
            "prompt_sha256": self.prompt_sha256,
            "protocol": self.protocol,
            "endpoint": self.endpoint,
            "ttft_ms": self.ttft_ms,
            "gaps_ms": list(self.gaps_ms),
            "chunk_chars": list(self.chunk_chars),
            "chunk_tokens": list(self.chunk_tokens),
            "finish_reason": self.finish_reason,
            "output_tokens": self.output_tokens,
            "tokens_source": self.tokens_source,
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "record") -> TraceRecord:
        unknown = sorted(set(d) - _RECORD_FIELDS)
        if unknown:
            known = ", ".join(sorted(_RECORD_FIELDS))
            raise TraceError(f"{where}: unknown field(s) {', '.join(unknown)} (a record holds only: {known})")
        prompt = d.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise TraceError(f"{where}: 'prompt' must be a string")
        sha = d.get("prompt_sha256") or ""
        if not isinstance(sha, str):
            raise TraceError(f"{where}: 'prompt_sha256' must be a hex string")
        gaps = d.get("gaps_ms")
        if not isinstance(gaps, list) or not all(
            isinstance(g, int | float) and not isinstance(g, bool) for g in gaps
        ):
            raise TraceError(f"{where}: 'gaps_ms' must be a list of numbers")
        finish = d.get("finish_reason")
        try:
            return cls(
                ttft_ms=_num(d, "ttft_ms", where, optional=True),
                gaps_ms=tuple(float(g) for g in gaps),
                chunk_chars=_ints(d, "chunk_chars", where),
                chunk_tokens=_ints(d, "chunk_tokens", where),
                output_tokens=int(_num(d, "output_tokens", where) or 0),
                finish_reason=finish if isinstance(finish, str) else None,
                protocol=str(d.get("protocol") or "openai"),
                endpoint=str(d.get("endpoint") or "chat"),
                prompt_sha256=sha,
                prompt_chars=int(_num(d, "prompt_chars", where, optional=True) or 0),
                prompt=prompt,
                tokens_source=str(d.get("tokens_source") or "chunks"),
            )
        except TraceError as exc:
            if str(exc).startswith(where):
                raise
            raise TraceError(f"{where}: {exc}") from None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True, slots=True)
class Trace:
    """A recorded server's timing: a header (model, when, note) and one `TraceRecord` per request."""

    records: tuple[TraceRecord, ...]
    model: str = ""
    recorded_at: str = ""
    note: str = ""
    max_tokens: int | None = None
    prompt_text: bool = True
    source: str = field(default="", compare=False)  # the file it was read from, for messages
    _by_hash: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.records:
            raise TraceError(f"{self.source or 'trace'}: no recorded requests")
        for i, r in enumerate(self.records):
            if r.prompt_sha256:
                self._by_hash.setdefault(r.prompt_sha256, i)

    def __len__(self) -> int:
        return len(self.records)

    # ---- files ----

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        p = Path(path)
        try:
            text = p.read_bytes()
        except OSError as exc:
            raise TraceError(
                f"cannot read trace {p}: {exc.strerror or exc} (record one with `workbench record --url URL "
                "--out FILE`; the repository ships data/traces/*.jsonl)"
            ) from None
        return cls.loads(text, source=str(p))

    @classmethod
    def loads(cls, text: str | bytes, *, source: str = "") -> Trace:
        where = source or "trace"
        raw = text.encode() if isinstance(text, str) else text
        lines = [(i + 1, ln) for i, ln in enumerate(raw.splitlines()) if ln.strip()]
        if not lines:
            raise TraceError(f"{where}: empty file, expected a workbench trace (JSON Lines)")
        objs: list[tuple[int, Any]] = []
        for no, ln in lines:
            try:
                objs.append((no, orjson.loads(ln)))
            except orjson.JSONDecodeError as exc:
                raise TraceError(f"{where}:{no}: not JSON ({exc})") from None
        no, head = objs[0]
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise TraceError(
                f"{where}:{no}: the first line is not a workbench trace header "
                f'(expected {{"format": "{FORMAT}", "version": {VERSION}, ...}}); '
                "write one with `workbench record`"
            )
        version = head.get("version")
        if version != VERSION:
            raise TraceError(
                f"{where}: trace format version {version!r}; this workbench reads version {VERSION}"
            )
        records = []
        for no, obj in objs[1:]:
            if not isinstance(obj, dict):
                raise TraceError(f"{where}:{no}: a record must be a JSON object")
            records.append(TraceRecord.from_dict(obj, f"{where}:{no}"))
        mt = head.get("max_tokens")
        return cls(
            records=tuple(records),
            model=str(head.get("model") or ""),
            recorded_at=str(head.get("recorded_at") or ""),
            note=str(head.get("note") or ""),
            max_tokens=mt if isinstance(mt, int) and not isinstance(mt, bool) else None,
            prompt_text=bool(head.get("prompt_text", True)),
            source=source,
        )

    def header(self, **extra: Any) -> dict[str, Any]:
        """The header line: format, version, when, the server's model name, what the recording holds."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "recorded_at": self.recorded_at,
            "model": self.model,
            "note": self.note,
            "n_requests": len(self.records),
            "max_tokens": self.max_tokens,
            "prompt_text": self.prompt_text,
            **extra,
        }

    def dumps(self, **header_extra: Any) -> str:
        lines = [orjson.dumps(self.header(**header_extra))]
        lines.extend(orjson.dumps(r.to_dict()) for r in self.records)
        return b"\n".join(lines).decode() + "\n"

    def dump(self, path: str | os.PathLike[str], **header_extra: Any) -> Path:
        p = Path(path)
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.dumps(**header_extra), encoding="utf-8")
        return p

    # ---- figures ----

    def ttft_ms(self) -> list[float]:
        return [r.ttft_ms for r in self.records if r.ttft_ms is not None]

    def itl_ms(self) -> list[float]:
        return [g for r in self.records for g in r.gaps_ms]

    def summary(self) -> dict[str, Any]:
        """Medians and counts: what a replay should reproduce."""
        return {
            "model": self.model,
            "requests": len(self.records),
            "ttft_ms_p50": _median(self.ttft_ms()),
            "itl_ms_p50": _median(self.itl_ms()),
            "output_tokens_mean": sum(r.output_tokens for r in self.records) / len(self.records),
            "chunks_mean": sum(r.n_chunks for r in self.records) / len(self.records),
        }

    def describe(self) -> str:
        s = self.summary()
        ttft, itl = s["ttft_ms_p50"], s["itl_ms_p50"]
        parts = [f"{s['requests']} requests of {self.model or 'an unnamed model'}"]
        if self.recorded_at:
            parts.append(f"recorded {self.recorded_at}")
        if ttft is not None:
            parts.append(f"TTFT p50 {ttft:.1f} ms")
        if itl is not None:
            parts.append(f"ITL p50 {itl:.1f} ms")
        text = ", ".join(parts)
        return f"{text} ({self.note})" if self.note else text

    # ---- replay ----

    def pick(self, keys: Iterable[str], seed: int = 0) -> TraceRecord:
        """The record for a request: the first key whose SHA-256 matches a recorded prompt, else one picked
        by a hash of (seed, keys), the same for the same request whatever the order requests arrive in."""
        keys = list(keys)
        for k in keys:
            i = self._by_hash.get(prompt_sha256(k))
            if i is not None:
                return self.records[i]
        h = hashlib.blake2b(digest_size=8)
        h.update(str(seed).encode())
        for k in keys:
            h.update(b"\x00" + k.encode("utf-8", "surrogatepass"))
        return self.records[int.from_bytes(h.digest(), "big") % len(self.records)]


class ReplayChunks:
    """The text of a replayed stream, chunk by chunk: simulated words cut to each recorded chunk's length.

    Same interface as `TokenStream` where the streaming engine uses it: `take_chunks(m, k)` gives the next m
    chunks (k is ignored: a recorded chunk carries what it carried), `take(m)` too, `remaining` counts chunks.
    A chunk recorded with no answer text (a reasoning or tool-call piece) gets one character, so it still
    counts as a token chunk on the client, as it did when recorded.
    """

    def __init__(self, chars: Sequence[int], seed: int, model: str, prompt: str) -> None:
        self._chars = [max(c, 1) for c in chars]
        self._i = 0
        self._words = TokenStream(seed, model, prompt, sum(self._chars) + 1)
        self._buf = ""

    @property
    def remaining(self) -> int:
        return len(self._chars) - self._i

    def _text(self, n: int) -> str:
        while len(self._buf) < n:
            more = "".join(self._words.take(32))
            self._buf += more if more else " " * (n - len(self._buf))
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def take(self, m: int) -> list[str]:
        end = min(self._i + max(m, 0), len(self._chars))
        out = [self._text(c) for c in self._chars[self._i : end]]
        self._i = end
        return out

    def take_chunks(self, m: int, tokens_per_chunk: int) -> list[str]:
        return self.take(m)


@dataclass(frozen=True, slots=True)
class Replay:
    """What one request replays: a record, cut to the request's max_tokens when that is smaller."""

    record: TraceRecord
    n_chunks: int
    completion_tokens: int
    finish_reason: str

    @property
    def ttft_ns(self) -> int:
        return int((self.record.ttft_ms or 0.0) * _MS)

    def gaps(self) -> Iterator[int]:
        """One gap per chunk after the first, then zeros (the engine draws one past the last chunk)."""
        own = (int(g * _MS) for g in self.record.gaps_ms[: max(self.n_chunks - 1, 0)])
        return itertools.chain(own, itertools.repeat(0))

    def chunks(self, seed: int, model: str, prompt: str) -> ReplayChunks:
        return ReplayChunks(self.record.chunk_chars[: self.n_chunks], seed, model, prompt)


class Lateness:
    """How late the simulator's first chunk of a replay goes out: the median of the last few, in ns.

    Between the due time and the write there is the timer's wake-up and, for Ollama-style streams, sending
    the response headers; together 0.3-1 ms, more on a busy machine. A replay aims each first chunk that much
    earlier, so a client sees the recorded TTFT plus only its own network path. Clamped to [0, `cap_ns`].
    """

    def __init__(self, window: int = 15, cap_ns: int = 3 * _MS) -> None:
        self._recent: deque[int] = deque(maxlen=window)
        self._cap = cap_ns

    def add(self, late_ns: int) -> None:
        self._recent.append(late_ns)

    def estimate_ns(self) -> int:
        if not self._recent:
            return 0
        return int(min(max(_median(list(self._recent)) or 0.0, 0.0), self._cap))


def _last_message(data: Mapping[str, Any]) -> str | None:
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs or not isinstance(msgs[-1], dict):
        return None
    content = msgs[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return None


def plan_replay(
    trace: Trace | None, data: Mapping[str, Any], prompt: str, seed: int, limit: object
) -> Replay | None:
    """The replay for one generation request (None without a trace).

    `prompt` is the simulator's prompt text (all messages joined); the recorder keeps the last user message,
    so both are tried. `limit` is the request's max_tokens / num_predict, if any.
    """
    if trace is None:
        return None
    keys = [prompt]
    last = _last_message(data)
    if last is not None and last != prompt:
        keys.append(last)
    rec = trace.pick(keys, seed)
    n, tokens = rec.n_chunks, rec.output_tokens
    finish = rec.finish_reason or "stop"
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < rec.output_tokens:
        # Keep whole chunks while they fit in the limit, as a server stops at max_tokens.
        kept = n = 0
        for t in rec.chunk_tokens:
            if kept + t > limit:
                break
            kept += t
            n += 1
        tokens, finish = kept, "length"
    return Replay(record=rec, n_chunks=n, completion_tokens=tokens, finish_reason=finish)
