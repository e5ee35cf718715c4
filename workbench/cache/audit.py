"""False-hit audit: how often would the semantic tier serve an answer that is wrong for the question asked?

`audit_semantic_cache` runs labelled pairs (a, b, same_answer) through an embedder *and* a real
`SemanticTier` the way a cache meets them: side ``a`` of every pair is stored, side ``b`` of every pair is
looked up. A hit is *correct* when the stored text it returned is answer-equivalent to the query (same text,
or joined to it by a ``same_answer`` pair, transitively); anything else is a *false hit*, including a hit on
another pair's ``a``.
Every threshold is a fresh tier with that `min_cosine`; the embeddings are computed once and reused.

Per threshold the frame gives: ``n`` queries, ``hits``, ``hit_rate`` (hits / n), ``correct_hits``,
``false_hits``, ``false_hit_rate`` (false hits / hits: the share of served cached answers that are wrong; 0
when nothing is served), ``false_hits_per_query`` (false hits / n), ``recall`` (correct hits / queries that
have an equivalent stored), each rate with a Wilson 95 % interval (``*_lo``, ``*_hi``).
``AuditResult.threshold_for`` picks the smallest audited threshold whose false-hit rate meets a budget.

Default pairs: the 600 labelled question pairs of the ``fow-cache`` package (``fow_cache/data/pairs.jsonl``:
near repeats and paraphrases that should hit; negation, entity-swap, number/date and scope traps that should
not). Data by Mabon ap Gwyn, https://github.com/Maby0/fow-cache, licensed CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/); read unchanged from the installed package.

Measured on those pairs (600 queries, 300 of them traps; false-hit rate = false hits / hits, Wilson 95 %
interval): the static default embedder (pair AUC 0.549) at min_cosine 0.80 / 0.90 / 0.95 hits 56 / 39 / 28 %
of queries with 44 / 37 / 35 % of hits wrong, and stays above a 5 % budget up to 0.995 (8 %); MiniLM (pair AUC
0.640) hits 60 / 41 / 28 % with 39 / 31 / 20 % wrong and first meets 5 % at 0.995 (3.8 %, interval 1.0-12.8
%). The traps are one-word edits (negation, swapped entity, number, scope) that any embedding-similarity cache
scores as near-identical: a real cache needs the exact tier, a high bar, and an audit on its own traffic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from workbench._exceptions import ConfigError
from workbench.cache.embedders import Embedder, default_embedder
from workbench.cache.semantic import SemanticTier

__all__ = ["DEFAULT_THRESHOLDS", "AuditResult", "audit_semantic_cache", "load_fow_pairs", "wilson_interval"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.70, 0.75, 0.80, 0.85, 0.90, 0.925, 0.95, 0.975, 0.99)
_PARTITION = "audit"
_Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def load_fow_pairs() -> pl.DataFrame:
    """The fow-cache question pairs (CC BY 4.0, see the module docstring) as a frame: id, category, a, b,
    same_answer, style."""
    try:
        ref = resources.files("fow_cache").joinpath("data", "pairs.jsonl")
        text = ref.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            "the default audit pairs come from the fow-cache package", hint="pip install fow-cache"
        ) from exc
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return pl.DataFrame(rows)


class _MemoEmbedder:
    """Embeds each distinct text once; every per-threshold tier then reuses the vectors."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._memo: dict[str, npt.NDArray[np.float32]] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def prime(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            for t, v in zip(todo, self.inner.embed(todo), strict=True):
                self._memo[t] = v

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.prime(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


class _Groups:
    """Union-find over texts: two texts share a group when some same_answer pair (transitively) joins them."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self._parent.setdefault(x, x)
        while parent != x:
            grand = self._parent[parent]
            self._parent[x] = grand
            x, parent = parent, self._parent[grand]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[ra] = rb


@dataclass(frozen=True)
class AuditResult:
    """Audit figures: `frame` (one row per threshold), `queries` (one row per threshold x query), `pairs`
    (each pair's own cosine), and `pair_auc` (how well that cosine ranks equivalent pairs above traps)."""

    embedder: str
    budget: float
    frame: pl.DataFrame
    queries: pl.DataFrame
    pairs: pl.DataFrame
    pair_auc: float
    conflicts: int  # traps whose two sides other equivalent pairs join anyway (counted as equivalent)

    def threshold_for(
        self,
        budget: float | None = None,
        *,
        per: Literal["hits", "queries"] = "hits",
        conservative: bool = False,
    ) -> float | None:
        """Smallest audited `min_cosine` whose false-hit rate is <= budget (None when none is).

        `per="hits"` bounds false hits / hits; `per="queries"` bounds false hits / queries.
        `conservative=True` bounds the upper end of the Wilson 95 % interval instead of the point estimate."""
        b = self.budget if budget is None else budget
        col = "false_hit_rate" if per == "hits" else "false_hits_per_query"
        if conservative:
            col += "_hi"
        ok = self.frame.filter(pl.col(col) <= b).sort("min_cosine")
        return None if ok.is_empty() else float(ok["min_cosine"][0])

    def by_category(self, min_cosine: float) -> pl.DataFrame:
        """Hits and false hits per pair category at one audited threshold."""
        q = self.queries.filter(pl.col("min_cosine") == min_cosine)
        if q.is_empty():
            raise ConfigError(f"min_cosine={min_cosine} was not audited", hint=f"audited: {self.thresholds}")
        return (
            q.group_by("category")
            .agg(
                n=pl.len(),
                hits=pl.col("hit").sum(),
                false_hits=(pl.col("hit") & ~pl.col("correct")).sum(),
                mean_pair_cosine=pl.col("pair_cosine").mean(),
            )
            .sort("category")
        )

    @property
    def thresholds(self) -> list[float]:
        return [float(t) for t in self.frame["min_cosine"]]

    def summary(self) -> str:
        lines = [f"embedder {self.embedder}: pair AUC {self.pair_auc:.3f}, n={self.frame['n'][0]}"]
        for r in self.frame.iter_rows(named=True):
            lines.append(
                f"  min_cosine {r['min_cosine']:.3f}: hit_rate {r['hit_rate']:.3f}, false_hit_rate "
                f"{r['false_hit_rate']:.3f} [{r['false_hit_rate_lo']:.3f}, {r['false_hit_rate_hi']:.3f}], "
                f"false_hits_per_query {r['false_hits_per_query']:.3f}, recall {r['recall']:.3f}"
            )
        t = self.threshold_for()
        lines.append(
            f"  threshold for a {self.budget:.0%} false-hit budget: {t if t is not None else 'none audited'}"
        )
        return "\n".join(lines)


def _auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_]) -> float:
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Mann-Whitney U through ranks (ties get the average rank)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[labels].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _rate_columns(name: str, k: int, n: int) -> dict[str, float]:
    lo, hi = wilson_interval(k, n)
    return {name: (k / n if n else 0.0), f"{name}_lo": lo, f"{name}_hi": hi}


def audit_semantic_cache(
    embedder: Embedder | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    pairs: pl.DataFrame | None = None,
    *,
    budget: float = 0.05,
    tier_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> AuditResult:
    """Audit `embedder` (default: the static one) at each `min_cosine` in `thresholds` on `pairs` (a frame
    with columns a, b, same_answer; default: the fow-cache pairs). `tier_options` go to `SemanticTier`.
    `progress=None` shows a tqdm bar when the run has more than 2,000 lookups."""
    if not thresholds:
        raise ConfigError("give at least one threshold")
    for t in thresholds:
        if not -1.0 <= t <= 1.0:
            raise ConfigError(f"threshold {t} is not a cosine similarity in [-1, 1]")
    frame = load_fow_pairs() if pairs is None else pairs
    missing = {"a", "b", "same_answer"} - set(frame.columns)
    if missing:
        raise ConfigError(
            f"pairs frame lacks columns {sorted(missing)}", hint="give columns a, b, same_answer"
        )
    if frame.is_empty():
        raise ConfigError("the pairs frame is empty")
    a = [str(x) for x in frame["a"]]
    b = [str(x) for x in frame["b"]]
    same = np.asarray(frame["same_answer"].cast(pl.Boolean).to_list(), dtype=bool)
    category = [str(x) for x in frame["category"]] if "category" in frame.columns else ["all"] * len(a)
    n = len(a)

    groups = _Groups()
    for x, y, s in zip(a, b, same, strict=True):
        groups.find(x)
        groups.find(y)
        if s:
            groups.union(x, y)
    conflicts = sum(
        1 for x, y, s in zip(a, b, same, strict=True) if not s and groups.find(x) == groups.find(y)
    )
    group_of_a = [groups.find(x) for x in a]
    stored_groups = set(group_of_a)
    answerable = [groups.find(y) in stored_groups for y in b]

    memo = _MemoEmbedder(embedder if embedder is not None else default_embedder())
    memo.prime(a + b)
    va, vb = memo.embed(a), memo.embed(b)
    pair_cos = np.einsum("ij,ij->i", va.astype(np.float64), vb.astype(np.float64))
    keys = [f"pair-{i}" for i in range(n)]

    show = progress if progress is not None else n * len(thresholds) > 2000
    from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]

    bar = tqdm(total=n * len(thresholds), desc=f"audit {memo.name}", disable=not show, leave=False)
    rows: list[dict[str, Any]] = []
    per_query: list[dict[str, Any]] = []
    try:
        for t in sorted(set(float(x) for x in thresholds)):
            options: dict[str, Any] = {"early_exit_cosine": None}
            options.update(tier_options or {})
            tier = SemanticTier(memo, min_cosine=t, **options)
            tier.add_vectors(_PARTITION, a, keys, va)
            hits = correct = 0
            correct_answerable = 0
            for i in range(n):
                match = tier.lookup(_PARTITION, b[i])
                hit = match is not None
                ok = False
                if match is not None:
                    j = int(match.key.removeprefix("pair-"))
                    ok = group_of_a[j] == groups.find(b[i])
                    hits += 1
                    correct += ok
                    correct_answerable += ok and answerable[i]
                per_query.append(
                    {
                        "min_cosine": t,
                        "pair": i,
                        "category": category[i],
                        "same_answer": bool(same[i]),
                        "pair_cosine": float(pair_cos[i]),
                        "hit": hit,
                        "similarity": match.similarity if match else None,
                        "matched_pair": int(match.key.removeprefix("pair-")) if match else None,
                        "correct": ok,
                    }
                )
                bar.update(1)
            false_hits = hits - correct
            n_answerable = int(sum(answerable))
            row: dict[str, Any] = {"min_cosine": t, "n": n, "hits": hits}
            row |= _rate_columns("hit_rate", hits, n)
            row |= {"correct_hits": correct, "false_hits": false_hits}
            row |= _rate_columns("false_hit_rate", false_hits, hits)
            row |= _rate_columns("false_hits_per_query", false_hits, n)
            row |= {"answerable": n_answerable}
            row |= _rate_columns("recall", correct_answerable, n_answerable)
            rows.append(row)
    finally:
        bar.close()

    pairs_frame = pl.DataFrame(
        {"a": a, "b": b, "category": category, "same_answer": same.tolist(), "cosine": pair_cos.tolist()}
    )
    return AuditResult(
        embedder=memo.name,
        budget=budget,
        frame=pl.DataFrame(rows),
        queries=pl.DataFrame(per_query),
        pairs=pairs_frame,
        pair_auc=_auc(pair_cos, same),
        conflicts=conflicts,
    )
