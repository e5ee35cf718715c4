"""The catalogue of optimizations: one field per toggle, each measurable on its own.

Every field carries, in its metadata, a one-line explanation and the seed report it comes from, so the
notebook panel and the reports describe a toggle the same way the code does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TRANSPORT_FIELDS", "Optimizations", "describe"]


def _opt(default: Any, explain: str, source: str) -> Any:
    return field(default=default, metadata={"explain": explain, "source": source})


@dataclass(frozen=True, slots=True)
class Optimizations:
    """Which client- and cache-side optimizations are on. The defaults are the honest baseline."""

    connection_pool: bool = _opt(
        False,
        "Keep one long-lived HTTP client with keep-alive instead of a new connection per request.",
        "rigrun opt 5; Vibe connection pooling",
    )
    http2: bool = _opt(
        False,
        "Speak HTTP/2 (multiplexed streams) where the server offers it, instead of HTTP/1.1.",
        "Vibe HTTP/2 pipelining; OllamaMax network tuning",
    )
    fast_parse: bool = _opt(
        False,
        "Frame bytes by hand and decode with orjson, no per-chunk model objects.",
        "rigrun StreamReader pool + decoder reuse",
    )
    coalesce_ui: bool = _opt(
        False,
        "Update the notebook widget at most ~30-60 times a second instead of once per chunk.",
        "OllamaMax 16 ms batching; rigrun per-token Send",
    )
    incremental_render: bool = _opt(
        False,
        "Send only the new text to the browser instead of the whole text on each update.",
        "rigrun full re-render on every token",
    )
    exact_cache: bool = _opt(
        False,
        "Answer repeated identical requests from an LRU + TTL cache keyed by the normalised request.",
        "rigrun ExactCache",
    )
    semantic_cache: bool = _opt(
        False,
        "Answer a paraphrase from a stored answer when embedding cosine similarity passes a threshold.",
        "rigrun SemanticCache (early exit at 0.95)",
    )
    disk_cache: bool = _opt(
        False,
        "Keep a compressed second cache tier on disk so answers survive a kernel restart.",
        "Vibe L1/L2/L3 cache + LZ4",
    )
    prewarm: bool = _opt(
        False,
        "Send a warm-up request that loads the model before anything is timed.",
        "Vibe model pre-warming; Ollama keep_alive",
    )
    concurrency: int = _opt(
        1,
        "Run up to N requests at once through a bounded worker pool, results kept in order.",
        "Nephoran worker pool; Vibe request pipelining",
    )
    early_cancel: bool = _opt(
        False,
        "Close the connection at once when a stream is stopped instead of reading it to the end.",
        "Nephoran context cancellation",
    )
    router_fast_path: bool = _opt(
        False,
        "Skip prompt classification when a policy already forces the tier.",
        "rigrun RouteQuery fast path",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")

    @classmethod
    def baseline(cls) -> Optimizations:
        """Everything off: what a typical client does."""
        return cls()

    @classmethod
    def all(cls, concurrency: int = 8) -> Optimizations:
        """Everything on. The semantic cache is included; use `replace` to leave it out."""
        flags = {f.name: True for f in dataclasses.fields(cls) if f.type in (bool, "bool")}
        return cls(**flags, concurrency=concurrency)

    @classmethod
    def transport(cls) -> Optimizations:
        """Only the transport optimizations (pool, HTTP/2, fast parse, early cancel) on."""
        return cls(**{name: True for name in TRANSPORT_FIELDS})

    def replace(self, **changes: Any) -> Optimizations:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def enabled(self) -> list[str]:
        """Names of the toggles that differ from the baseline."""
        base = Optimizations()
        return [k for k, v in self.as_dict().items() if v != getattr(base, k)]

    def label(self) -> str:
        on = self.enabled()
        if not on:
            return "baseline"
        if len(on) == len(dataclasses.fields(self)):
            return "all"
        return "+".join(on)


TRANSPORT_FIELDS: tuple[str, ...] = ("connection_pool", "http2", "fast_parse", "early_cancel")


def describe() -> list[dict[str, Any]]:
    """One row per toggle: name, type, default, explanation, source. Used by the panel and reports."""
    return [
        {
            "name": f.name,
            "type": "int" if f.type in (int, "int") else "bool",
            "default": f.default,
            "explain": f.metadata["explain"],
            "source": f.metadata["source"],
        }
        for f in dataclasses.fields(Optimizations)
    ]
