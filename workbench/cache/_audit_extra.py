"""Helpers around `workbench.cache.audit`: hold-out halves, the hold-out report, and pairs from the hits a
semantic tier served (to label by hand or with a judge, then audit)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench._exceptions import ConfigError
from workbench.cache.verify import Verifier

if TYPE_CHECKING:
    from workbench.cache.audit import AuditResult

__all__ = ["RATE_COLUMNS", "holdout_report", "label_pairs", "served_pairs", "split_pairs"]


# A configuration's counts and rates with their interval bounds, in the order the audit's tables show them.
RATE_COLUMNS = (
    "n",
    "hits",
    "hit_rate",
    "false_hits",
    "false_hit_rate",
    "false_hit_rate_lo",
    "false_hit_rate_hi",
    "recall",
    "recall_lo",
    "recall_hi",
)

def split_pairs(pairs: pl.DataFrame, *, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two halves of a pair frame, stratified by ``category`` (when present), in a fixed pseudo-random
    order (blake2b of seed and row number): one to choose a configuration on, one to report it on."""
    n = len(pairs)
    h = [
        int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big")
        for i in range(n)
    ]
    f = pairs.with_columns(pl.Series("_h", h, dtype=pl.UInt64))
    by = "category" if "category" in pairs.columns else None
    f = f.sort([by, "_h"] if by else ["_h"])
    half = pl.int_range(pl.len()).over(by) % 2 if by else pl.int_range(pl.len()) % 2
    f = f.with_columns(half.alias("_half"))
    return (
        f.filter(pl.col("_half") == 0).drop("_h", "_half"),
        f.filter(pl.col("_half") == 1).drop("_h", "_half"),
    )


def holdout_report(
    tune: AuditResult, test: AuditResult, budget: float | None = None, **restrict: Any
) -> pl.DataFrame:
    """The operating point chosen on `tune`, and the same configuration's figures on `test` (which the
    choice never saw). `restrict` goes to `AuditResult.operating_point` (embedders=..., verifiers=...)."""
    point = tune.operating_point(budget, **restrict)
    if point is None:
        raise ConfigError("no configuration meets the budget on the tuning half", hint="raise the budget")
    same = test.frame.filter(
        (pl.col("embedder") == point["embedder"])
        & (pl.col("verifier") == point["verifier"])
        & (pl.col("min_cosine") == point["min_cosine"])
    )
    if same.is_empty():
        raise ConfigError(
            "the test audit did not run the chosen configuration", hint="audit both halves alike"
        )
    cols = ["embedder", "verifier", "min_cosine", *RATE_COLUMNS]
    return pl.concat(
        [
            pl.DataFrame([point]).select(cols).with_columns(pl.lit("chosen on this half").alias("half")),
            same.select(cols).with_columns(pl.lit("held out").alias("half")),
        ]
    ).select(["half", *cols])


def served_pairs(source: Any, n: int | None = 200, *, seed: int = 0) -> pl.DataFrame:
    """Pairs to label from the hits a semantic tier served: a (the stored text that answered), b (the
    query), similarity. `source` is a `SemanticTier` (its `served()` log) or a frame with columns query and
    matched (or a and b). A random sample of `n` rows (all when fewer or n=None), each distinct pair once.
    Label it yourself (add ``same_answer``) or with `label_pairs`, then `audit_semantic_cache(pairs=...)`."""
    frame = source.served() if hasattr(source, "served") else source
    if not isinstance(frame, pl.DataFrame):
        raise ConfigError("served_pairs takes a SemanticTier or a polars frame")
    if {"query", "matched"} <= set(frame.columns):
        frame = frame.rename({"matched": "a", "query": "b"})
    if not {"a", "b"} <= set(frame.columns):
        raise ConfigError("the served frame needs columns query and matched (or a and b)")
    cols = ["a", "b"] + (["similarity"] if "similarity" in frame.columns else [])
    out = frame.select(cols).unique(subset=["a", "b"], maintain_order=True)
    if n is not None and len(out) > n:
        out = out.sample(n, seed=seed)
    return out


def label_pairs(pairs: pl.DataFrame, judge: Verifier) -> pl.DataFrame:
    """`pairs` with ``same_answer`` (and ``label_reason``) set by `judge` (e.g. `verify.LLMJudge` on the
    backend): would the answer stored for a serve b? A judge that fails or answers unclearly labels the
    pair False (a miss is the safe reading)."""
    if not {"a", "b"} <= set(pairs.columns):
        raise ConfigError("label_pairs needs columns a and b")
    sims = pairs["similarity"].to_list() if "similarity" in pairs.columns else [1.0] * len(pairs)
    verdicts = [
        judge.check(str(b), str(a), float(s)) for a, b, s in zip(pairs["a"], pairs["b"], sims, strict=True)
    ]
    return pairs.with_columns(
        pl.Series("same_answer", [v.accept for v in verdicts], dtype=pl.Boolean),
        pl.Series("label_reason", [v.reason for v in verdicts], dtype=pl.Utf8),
    )
