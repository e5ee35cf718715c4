"""Latency model: when each chunk is due, relative to the start of prefill. Pure, seeded, no I/O.

Chunk i (0-based, content chunks only) is due at `ttft + sum(gaps[:i])`, gaps drawn lazily so a long
stream starts at once. The app sleeps until a chunk is due and sends every chunk already due in one
write, so in zero-delay mode whole batches go out at once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from workbench.simulator.profile import Profile

__all__ = ["ColdStarts", "Schedule", "schedule", "trace_from_stamps"]

_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Schedule:
    """When content chunks are due: chunk 0 at `ttft_ns` after prefill starts, then one gap per chunk."""

    ttft_ns: int  # prefill only; load time is separate
    gaps: Iterator[int]  # endless: the delay between chunk i and i+1, drawn on demand


def schedule(profile: Profile, prompt_tokens: int, rng: random.Random) -> Schedule:
    if profile.trace_ms:
        ttft = int(profile.trace_ms[0] * _MS)
        cycle = [int(g * _MS) for g in profile.trace_ms[1:]] or [0]
        return Schedule(ttft, itertools.cycle(cycle))
    ttft = int((profile.ttft_ms + profile.ttft_per_prompt_token_ms * prompt_tokens) * _MS)
    base = profile.token_delay_ms * profile.tokens_per_chunk * _MS
    if base == 0 or profile.jitter == 0:
        return Schedule(ttft, itertools.repeat(int(base)))
    return Schedule(ttft, _jittered(base, profile.jitter, rng))


def _jittered(base: float, j: float, rng: random.Random) -> Iterator[int]:
    uni = rng.uniform
    while True:
        yield int(base * (1.0 + uni(-j, j)))


def trace_from_stamps(sent_ns: int, chunk_ns: Sequence[int]) -> tuple[float, ...]:
    """A replayable trace from a recorded stream: (ttft_ms, gap_ms, ...) for `Profile(trace_ms=...)`.

    Pass the send stamp and the arrival stamps of the text-bearing chunks, e.g. from a StreamResult of a
    real server: `trace_from_stamps(r.sent_ns, [c.t_ns for c in r.chunks if c.text])`.
    """
    if not chunk_ns:
        raise ValueError("no chunk stamps to build a trace from")
    out = [max(chunk_ns[0] - sent_ns, 0) / _MS]
    out.extend(max(b - a, 0) / _MS for a, b in itertools.pairwise(chunk_ns))
    return tuple(out)


class ColdStarts:
    """Per-model load state. Not thread-safe: lives on the server's event loop.

    A model is cold before its first request (when `cold_start`) and after `cold_after_s` without requests.
    Requests arriving while a model loads wait for the same load to finish.
    """

    def __init__(self) -> None:
        self._ready_at: dict[str, int] = {}
        self._last_used: dict[str, int] = {}
        self._active: dict[str, int] = {}

    def load_wait_ns(self, profile: Profile, model: str, now_ns: int) -> int:
        """How long this request must wait for the model to be loaded (0 when warm)."""
        ready = self._ready_at.get(model)
        if ready is not None and now_ns < ready:
            return ready - now_ns
        last = self._last_used.get(model)
        cold = False
        if last is None:
            # cold_after_s=0: every request that finds the model idle loads it, the first one included.
            cold = profile.cold_start or profile.cold_after_s == 0
        elif profile.cold_after_s is not None and not self._active.get(model):
            cold = now_ns - last >= int(profile.cold_after_s * 1e9)
        if not cold or profile.load_ms <= 0:
            return 0
        wait = int(profile.load_ms * _MS)
        self._ready_at[model] = now_ns + wait
        return wait

    def begin(self, model: str, now_ns: int) -> None:
        self._active[model] = self._active.get(model, 0) + 1
        self._last_used[model] = now_ns

    def end(self, model: str, now_ns: int) -> None:
        self._active[model] = max(self._active.get(model, 1) - 1, 0)
        self._last_used[model] = now_ns
