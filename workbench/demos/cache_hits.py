"""An end-to-end cache run against a server (the loopback simulator in tests and notebooks).

`cache_demo(sim_url)` sends a small workload with repeats and paraphrases through a `Client` with a
`ResponseCache` attached and returns one row per request: the phase (``first``, ``repeat``,
``paraphrase``), the hit type, TTFT and done time, and what a hit saved. Repeats should be exact hits with a
TTFT far below the misses'; paraphrases are semantic hits when the semantic tier is on (and misses when it
is off, or when a paraphrase is too far from the original, which the frame shows honestly).

    from workbench.simulator import Simulator
    from workbench.demos.cache_hits import cache_demo
    with Simulator() as sim:
        df = cache_demo(sim.url)
    df.group_by("cache").agg(pl.col("ttft_ms").median())
"""

from __future__ import annotations

from typing import Any

import polars as pl

from workbench._types import Backend, Request, StreamResult
from workbench.cache.tiers import ResponseCache, SemanticLike

__all__ = ["DEMO_PROMPTS", "cache_demo"]

# (original, paraphrase). The last paraphrase is deliberately far from its original in wording.
DEMO_PROMPTS: tuple[tuple[str, str], ...] = (
    ("What is a cache?", "Can you explain what a cache is?"),
    ("How does HTTP/2 multiplexing work?", "Explain how multiplexing works in HTTP/2."),
    ("Why is the sky blue?", "Why does the sky look blue?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
    ("What does TTFT measure?", "What is measured by TTFT?"),
)


def _semantic_default() -> SemanticLike | None:
    try:
        from workbench.cache.semantic import SemanticTier
    except ImportError:
        return None
    tier: SemanticLike = SemanticTier()
    return tier


def cache_demo(
    sim_url: str,
    *,
    model: str = "sim-small",
    semantic: bool | SemanticLike = True,
    repeats: int = 2,
    max_tokens: int = 24,
    replay_timing: bool = False,
    cache: ResponseCache | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """Run originals, `repeats` rounds of exact repeats, then paraphrases; one row per request.

    Columns: i, phase, round, prompt, cache, ttft_ms, done_ms, saved_ms, saved_tokens, cache_similarity,
    cache_matched_prompt, output_tokens, status.
    """
    from workbench.client import Client  # the client imports the cache hook; keep this module light

    sem: SemanticLike | None
    if semantic is True:
        sem = _semantic_default()
    elif semantic is False:
        sem = None
    else:
        sem = semantic
    if cache is None:
        cache = ResponseCache(semantic=sem, replay_timing=replay_timing)
    plan: list[tuple[str, int, str]] = [("first", 0, a) for a, _ in DEMO_PROMPTS]
    for r in range(1, repeats + 1):
        plan += [("repeat", r, a) for a, _ in DEMO_PROMPTS]
    plan += [("paraphrase", 0, b) for _, b in DEMO_PROMPTS]
    results: list[tuple[str, int, StreamResult]] = []
    with Client(Backend(sim_url), cache=cache, **(client_kwargs or {})) as client:
        for phase, rnd, prompt in plan:
            req = Request.chat(model, prompt, temperature=0, max_tokens=max_tokens, tags={"phase": phase})
            results.append((phase, rnd, client.run(req)))
    rows = [
        {
            "i": i,
            "phase": phase,
            "round": rnd,
            "prompt": res.request.last_user_text,
            "cache": res.cache,
            "ttft_ms": res.metrics.ttft_ms,
            "done_ms": res.metrics.done_ms,
            "saved_ms": res.saved_ms,
            "saved_tokens": res.saved_tokens,
            "cache_similarity": res.cache_similarity,
            "cache_matched_prompt": res.cache_matched_prompt,
            "output_tokens": res.metrics.output_tokens,
            "status": res.status,
        }
        for i, (phase, rnd, res) in enumerate(results)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "i": pl.Int64,
            "phase": pl.Utf8,
            "round": pl.Int64,
            "prompt": pl.Utf8,
            "cache": pl.Utf8,
            "ttft_ms": pl.Float64,
            "done_ms": pl.Float64,
            "saved_ms": pl.Float64,
            "saved_tokens": pl.Int64,
            "cache_similarity": pl.Float64,
            "cache_matched_prompt": pl.Utf8,
            "output_tokens": pl.Int64,
            "status": pl.Utf8,
        },
    )
