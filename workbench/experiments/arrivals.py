"""Arrival modes: how requests are offered to the server, and the absolute open-loop schedule.

Open loop is driven from a precomputed schedule of absolute offsets (ns from the run start). The dispatcher
waits for each deadline against `perf_counter_ns()`; it never accumulates `sleep(1/rate)` steps, which is
how vLLM's bench under-delivers its rate (issue 21104): every late wake-up would push all later requests back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from workbench._exceptions import ConfigError

__all__ = [
    "Arrival",
    "Concurrency",
    "Rate",
    "Sequential",
    "Sweep",
    "parse_arrival",
    "parse_sweep",
    "schedule_ns",
    "sleep_until_ns",
]


@dataclass(frozen=True, slots=True)
class Sequential:
    """One request at a time; the next is sent when the previous one ended."""

    def label(self) -> str:
        return "sequential"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """Closed loop: `n` workers, each sends its next request as soon as its previous one ended."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.n}")

    def label(self) -> str:
        return f"concurrency={self.n}"


@dataclass(frozen=True, slots=True)
class Rate:
    """Open loop: requests offered at `rate` per second (constant gaps or Poisson), whatever the server does.

    At most `max_concurrency` requests are in flight; a request that finds no free slot waits, and that wait
    is recorded as `client_queue_ms` (never hidden inside TTFT). The default, 100, is the pooled client's
    connection limit: a higher cap would move the excess wait into httpx, after the send stamp.
    """

    rate: float
    poisson: bool = False
    max_concurrency: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")

    def label(self) -> str:
        return f"rate={self.rate:g}" + (",poisson" if self.poisson else "")


Arrival = Sequential | Concurrency | Rate


def parse_arrival(spec: str | Arrival | None) -> Arrival:
    """`"sequential"`, `"concurrency=8"`, `"rate=200"`, `"rate=200,poisson"` (optionally `,cap=64,seed=3`)."""
    if spec is None:
        return Sequential()
    if isinstance(spec, Sequential | Concurrency | Rate):
        return spec
    text = spec.strip().lower()
    if text in ("sequential", "seq"):
        return Sequential()
    head, _, rest = text.partition(",")
    key, _, value = head.partition("=")
    try:
        if key == "concurrency":
            return Concurrency(int(value))
        if key == "rate":
            opts = [o.strip() for o in rest.split(",") if o.strip()]
            poisson = "poisson" in opts
            kv = dict(o.split("=", 1) for o in opts if "=" in o)
            unknown = [o for o in opts if o != "poisson" and o.split("=", 1)[0] not in ("cap", "seed")]
            if unknown:
                raise ValueError(f"unknown option(s) {unknown}")
            return Rate(float(value), poisson, int(kv.get("cap", 100)), int(kv.get("seed", 0)))
    except ValueError as exc:
        raise ConfigError(f"cannot read arrival {spec!r}: {exc}", hint=_ARRIVAL_HINT) from exc
    raise ConfigError(f"unknown arrival mode {spec!r}", hint=_ARRIVAL_HINT)


_ARRIVAL_HINT = "use sequential, concurrency=N or rate=R[,poisson][,cap=N][,seed=S]"


@dataclass(frozen=True, slots=True)
class Sweep:
    """A series of arrival modes run one after another (rates or concurrency levels)."""

    kind: Literal["rate", "concurrency"]
    levels: tuple[float, ...]
    poisson: bool = False

    def arrivals(self) -> list[Arrival]:
        if self.kind == "concurrency":
            return [Concurrency(int(level)) for level in self.levels]
        return [Rate(level, self.poisson) for level in self.levels]


def parse_sweep(spec: str) -> Sweep:
    """`"concurrency=1,2,4,8"` or `"rate=10,50,100[,poisson]"`."""
    key, _, values = spec.strip().lower().partition("=")
    parts = [v.strip() for v in values.split(",") if v.strip()]
    poisson = "poisson" in parts
    try:
        levels = tuple(float(v) for v in parts if v != "poisson")
    except ValueError as exc:
        raise ConfigError(
            f"cannot read sweep {spec!r}", hint="e.g. concurrency=1,4,16 or rate=10,50"
        ) from exc
    if key not in ("rate", "concurrency") or not levels:
        raise ConfigError(f"cannot read sweep {spec!r}", hint="e.g. concurrency=1,4,16 or rate=10,50,poisson")
    return Sweep("rate" if key == "rate" else "concurrency", levels, poisson)


def schedule_ns(n: int, rate: float, *, poisson: bool = False, seed: int = 0) -> np.ndarray:
    """Absolute send offsets (int64 ns from the run start) for `n` requests; the first is at 0.

    Poisson gaps are exponential with mean 1/rate, drawn from a seeded generator, so a run is repeatable.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if poisson:
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n - 1)
    else:
        gaps = np.full(n - 1, 1.0 / rate)
    offsets = np.concatenate(([0.0], np.cumsum(gaps)))
    return np.round(offsets * 1e9).astype(np.int64)


# Below this, a timer sleep would overshoot by asyncio's ~1 ms resolution; a zero-length sleep yields instead.
_SPIN_NS = 200_000


async def sleep_until_ns(deadline_ns: int) -> int:
    """Wait until `perf_counter_ns() >= deadline_ns`; return the wake-up time (late by scheduler lag only)."""
    while True:
        now = time.perf_counter_ns()
        left = deadline_ns - now
        if left <= 0:
            return now
        await asyncio.sleep(left / 1e9 if left > _SPIN_NS else 0)
