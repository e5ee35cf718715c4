"""`Profile`: every latency and fault knob of the simulator in one frozen, seeded value.

A request may override any field with the header `X-Sim-Override: {"token_delay_ms": 0, ...}` (JSON) or
`X-Sim-Fault: disconnect_after=5, stall_s=0.2` (comma separated `name=value`), so one running server can
serve many tests with different behaviour.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from workbench.simulator.trace import Trace, TraceError

__all__ = ["Profile", "ProfileError", "apply_overrides", "parse_fault_header"]


class ProfileError(ValueError):
    """A profile value or a per-request override is invalid (the server answers 400)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """Latency model and fault injection. All durations are milliseconds unless the name says `_s`.

    Fault counters (`*_after`) count content chunks (chunks that carry text) already sent. Per request,
    `{"cold_after_s": 0}` forces a model load; requests that override `max_parallel` share one queue per
    value. Output text, lengths and jitter are functions of (seed, model, prompt[, request seed]).
    """

    seed: int = 0
    models: tuple[str, ...] = ("sim-small", "sim-large")
    embed_models: tuple[str, ...] = ("sim-embed",)
    # Time to first token = ttft_ms + ttft_per_prompt_token_ms * prompt_tokens (+ load_ms when cold).
    ttft_ms: float = 120.0
    ttft_per_prompt_token_ms: float = 0.5
    # Delay between chunks = token_delay_ms * tokens_per_chunk * (1 + uniform(-jitter, +jitter)).
    token_delay_ms: float = 15.0
    jitter: float = 0.25
    tokens_per_chunk: int = 1
    # Output length when the request sets no max_tokens / num_predict: picked from the prompt hash.
    default_tokens_min: int = 48
    default_tokens_max: int = 160
    # Cold start: load_ms is added before prefill on the first request (cold_start) and after idle periods.
    load_ms: float = 800.0
    cold_start: bool = False
    cold_after_s: float | None = None
    # Requests beyond max_parallel wait in a FIFO queue (recorded as queued_ms in the ground truth).
    max_parallel: int | None = None
    embed_ms: float = 2.0
    embed_dim: int = 384
    # Trace replay: [ttft_ms, gap_ms, gap_ms, ...] replaces the latency model; gaps repeat cyclically.
    trace_ms: tuple[float, ...] = ()
    # A recorded server (`workbench record`): a Trace or the path of its .jsonl file. Each request replays
    # a recorded one (timing, chunking, token counts; see workbench.simulator.trace), in place of the
    # latency model and output lengths above. The recorded model name is listed first.
    trace: Trace | str | os.PathLike[str] | None = None
    # Wake for each chunk on a sub-millisecond timer thread (timer.py) instead of the event loop's timer,
    # whose whole-millisecond epoll timeouts quantize gaps to ~1 ms; costs a thread switch per chunk.
    # None: only for trace replays, whose job is to reproduce recorded gaps.
    precise_timer: bool | None = None
    # Faults.
    error_status: int | None = None
    disconnect_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 1.0
    malformed_after: int | None = None
    truncate_after: int | None = None
    error_after: int | None = None
    version: str = field(default="0.5.7")

    def __post_init__(self) -> None:
        if self.tokens_per_chunk < 1:
            raise ProfileError("tokens_per_chunk must be >= 1")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ProfileError("max_parallel must be >= 1 or None")
        if not 0.0 <= self.jitter <= 1.0:
            raise ProfileError("jitter must be within [0, 1]")
        if self.default_tokens_min < 0 or self.default_tokens_max < self.default_tokens_min:
            raise ProfileError("need 0 <= default_tokens_min <= default_tokens_max")
        if self.embed_dim < 8:
            raise ProfileError("embed_dim must be >= 8")
        if self.error_status is not None and not 400 <= self.error_status <= 599:
            raise ProfileError("error_status must be an HTTP error status (400-599)")
        for name in (
            "ttft_ms",
            "ttft_per_prompt_token_ms",
            "token_delay_ms",
            "load_ms",
            "stall_s",
            "embed_ms",
        ):
            if getattr(self, name) < 0:
                raise ProfileError(f"{name} must be >= 0")
        if any(g < 0 for g in self.trace_ms):
            raise ProfileError("trace_ms entries must be >= 0")
        if self.trace is not None:
            self._load_trace()

    def _load_trace(self) -> None:
        trace = self.trace
        if self.trace_ms:
            raise ProfileError("set trace (a recorded server) or trace_ms (one timing list), not both")
        if not isinstance(trace, Trace):
            assert trace is not None
            try:
                trace = Trace.load(trace)
            except TraceError as exc:
                raise ProfileError(str(exc)) from None
            object.__setattr__(self, "trace", trace)
        if trace.model and trace.model not in self.models:
            # Clients that ask the server for its models (`--model` left out) get the recorded one.
            object.__setattr__(self, "models", (trace.model, *self.models))

    @property
    def replay_trace(self) -> Trace | None:
        """The loaded trace (`trace` after construction is always a Trace or None)."""
        return self.trace if isinstance(self.trace, Trace) else None

    @classmethod
    def instant(cls, **kwargs: Any) -> Profile:
        """Zero delay everywhere: for functional tests and throughput benchmarks."""
        base: dict[str, Any] = {
            "ttft_ms": 0.0,
            "ttft_per_prompt_token_ms": 0.0,
            "token_delay_ms": 0.0,
            "jitter": 0.0,
            "load_ms": 0.0,
            "embed_ms": 0.0,
        }
        base.update(kwargs)
        return cls(**base)

    def replace(self, **changes: Any) -> Profile:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Profile)}
_TUPLE_FIELDS = {"models", "embed_models", "trace_ms"}


def _coerce(name: str, value: Any) -> Any:
    if name not in _FIELDS:
        known = ", ".join(sorted(_FIELDS))
        raise ProfileError(f"unknown simulator knob {name!r} (known: {known})")
    if name == "trace":
        raise ProfileError("trace cannot be set per request: start the simulator with Profile(trace=...)")
    if name in _TUPLE_FIELDS:
        if not isinstance(value, list | tuple):
            raise ProfileError(f"{name} must be a list")
        return tuple(float(v) for v in value) if name == "trace_ms" else tuple(str(v) for v in value)
    return value


def _coerce_text(name: str, raw: str) -> Any:
    """Values from `X-Sim-Fault: a=1,b=none` are text; read them as JSON scalars when they parse."""
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def parse_fault_header(value: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        name, sep, raw = part.partition("=")
        if not sep:
            raise ProfileError(f"X-Sim-Fault part {part.strip()!r} is not name=value")
        out[name.strip()] = _coerce_text(name.strip(), raw)
    return out


def apply_overrides(profile: Profile, override_json: str | None, fault_header: str | None) -> Profile:
    """The profile for one request: header overrides on top of the server's profile."""
    changes: dict[str, Any] = {}
    if override_json:
        try:
            data = orjson.loads(override_json)
        except orjson.JSONDecodeError as exc:
            raise ProfileError(f"X-Sim-Override is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProfileError("X-Sim-Override must be a JSON object")
        changes.update(data)
    if fault_header:
        changes.update(parse_fault_header(fault_header))
    if not changes:
        return profile
    try:
        coerced = {k: _coerce(k, v) for k, v in changes.items()}
        return dataclasses.replace(profile, **coerced)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"bad simulator override: {exc}") from None
