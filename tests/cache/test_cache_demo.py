from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest

from workbench.demos.cache_hits import DEMO_PROMPTS, cache_demo
from workbench.simulator import Profile, Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(Profile.instant(ttft_ms=30.0, token_delay_ms=2.0, seed=5)) as s:
        yield s


def test_cache_demo_shows_hit_types_and_ttft(sim: Simulator) -> None:
    df = cache_demo(sim.url, repeats=2)
    n = len(DEMO_PROMPTS)
    assert df.height == n * 4
    assert (df["status"] == "ok").all()
    first = df.filter(pl.col("phase") == "first")
    repeats = df.filter(pl.col("phase") == "repeat")
    para = df.filter(pl.col("phase") == "paraphrase")
    assert (first["cache"] == "miss").all()
    assert (repeats["cache"] == "exact").all()
    # paraphrases: most match their own original (the static embedder misses some; none may match a wrong one)
    sem = para.filter(pl.col("cache") == "semantic")
    assert sem.height >= n // 2
    originals = {b: a for a, b in DEMO_PROMPTS}
    for row in sem.iter_rows(named=True):
        assert row["cache_matched_prompt"] == originals[row["prompt"]]
        assert row["cache_similarity"] >= 0.9
    assert set(para["cache"].to_list()) <= {"semantic", "miss"}
    # hits answer far sooner than misses, and say what they saved
    ttft = df.group_by(pl.col("cache").is_in(["exact", "semantic"]).alias("hit")).agg(
        pl.col("ttft_ms").median()
    )
    hit_ttft = ttft.filter(pl.col("hit"))["ttft_ms"][0]
    miss_ttft = ttft.filter(~pl.col("hit"))["ttft_ms"][0]
    assert hit_ttft < miss_ttft / 5
    assert (repeats["saved_ms"] > 0).all() and (repeats["saved_tokens"] > 0).all()


def test_cache_demo_without_semantic_tier(sim: Simulator) -> None:
    df = cache_demo(sim.url, semantic=False, repeats=1)
    assert set(df.filter(pl.col("phase") == "paraphrase")["cache"].to_list()) == {"miss"}
    assert (df.filter(pl.col("phase") == "repeat")["cache"] == "exact").all()
