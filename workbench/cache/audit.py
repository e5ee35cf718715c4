"""False-hit audit: how often would the semantic tier serve an answer that is wrong for the question asked?

`audit_semantic_cache` runs labelled pairs (any frame with columns a, b, same_answer) through a real
`SemanticTier` the way a cache meets them, for each embedder x verifier x floor (``min_cosine``): side ``a``
of every pair is stored, side ``b`` of every pair is looked up. A hit is *correct* when the stored text it
returned is answer-equivalent to the query (same text, or joined to it by a ``same_answer`` pair,
transitively); anything else is a *false hit*, including a hit on another pair's ``a``. Every
configuration is a fresh tier; the embeddings are computed once per embedder and reused.

Per configuration the frame gives: ``n`` queries, ``hits``, ``hit_rate`` (hits / n), ``correct_hits``,
``false_hits``, ``false_hit_rate`` (false hits / hits: the share of served cached answers that are wrong; 0
when nothing is served), ``false_hits_per_query`` (false hits / n), ``recall`` (correct hits / queries that
have an equivalent stored), each rate with a Wilson 95 % interval (``*_lo``, ``*_hi``); and what it costs:
``embed_us`` (one query), ``search_us``, ``verify_us`` (mean per check, measured on cold queries against
stored texts), ``checks_per_lookup`` and ``lookup_us`` (their sum per lookup). `AuditResult.operating_point`
picks the configuration with the highest recall whose false-hit rate (upper end of the interval by
default) meets a budget; `best_per_config` gives each embedder / verifier alone; `holdout_report`
(with `split_pairs`) chooses on one half and scores on the other. `served_pairs` and `label_pairs` turn
the hits a tier served into a frame to audit.

Default pairs: the 600 labelled question pairs of the ``fow-cache`` package (``fow_cache/data/pairs.jsonl``:
near repeats and paraphrases that should hit; negation, entity-swap, number/date and scope traps that should
not). Data by Mabon ap Gwyn, https://github.com/Maby0/fow-cache, licensed CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/); read unchanged from the installed package.

Measured on those pairs (600 queries, 4 candidates per lookup; false-hit rate = false hits / hits, upper end
of its Wilson 95 % interval in brackets). Without a verifier no floor up to 0.99 meets a 5 % budget: the
static embedder (pair AUC 0.549) at 0.99 serves 19 wrong of 103 hits (18 %, [27 %]), MiniLM (AUC 0.640) 4
of 76 ([12.8 %]). With the `TrapGuard` verifier the static embedder at 0.90 serves 1 wrong of 110 hits
(0.9 %, [4.97 %]) at recall 33 %: that is the default (`semantic.DEFAULT_MIN_COSINE`); MiniLM + trap guard
at 0.85: 0 of 120 ([3.1 %]), recall 37 %, but a MiniLM query embedding costs ~12 ms against ~21 us. The
guard costs 50-105 us per check on this 2-core machine. fow-cache is what the default is tuned on, and the
guard's rules were revised on the errors of one half (`split_pairs(seed=0)`'s first): chosen on that half
(point estimate <= 5 %: 0.80, 1 wrong of 57), the other half gets 0 wrong of 50, recall 32 %. Audit your
own traffic before trusting any of it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from workbench._exceptions import ConfigError
from workbench.cache._audit_extra import RATE_COLUMNS, holdout_report, label_pairs, served_pairs, split_pairs
from workbench.cache.embedders import Embedder, default_embedder
from workbench.cache.semantic import DEFAULT_CANDIDATES, SemanticTier
from workbench.cache.verify import Verifier

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AuditResult",
    "audit_semantic_cache",
    "holdout_report",
    "label_pairs",
    "load_fow_pairs",
    "measure_cost",
    "served_pairs",
    "split_pairs",
    "wilson_interval",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (
    0.70,
    0.75,
    0.80,
    0.85,
    0.875,
    0.90,
    0.91,
    0.92,
    0.93,
    0.94,
    0.95,
    0.96,
    0.97,
    0.98,
    0.99,
)
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
    """Audit figures. `frame`: one row per configuration (embedder x verifier x min_cosine) with hit rate,
    false-hit rate and recall, each with its Wilson 95 % interval, and the measured costs; `queries`: one
    row per configuration x query; `pairs`: each pair's own cosine (first embedder); `pair_auc`: how well
    that cosine ranks equivalent pairs above traps (`pair_aucs`: per embedder); `costs`: per embedder and
    verifier, the measured microseconds per embedding or check."""

    embedder: str
    budget: float
    frame: pl.DataFrame
    queries: pl.DataFrame
    pairs: pl.DataFrame
    pair_auc: float
    conflicts: int  # traps whose two sides other equivalent pairs join anyway (counted as equivalent)
    pair_aucs: dict[str, float] = field(default_factory=dict)
    costs: pl.DataFrame = field(default_factory=pl.DataFrame)

    def _config(self, embedder: str | None, verifier: str | None) -> pl.DataFrame:
        f = self.frame
        if embedder is not None:
            f = f.filter(pl.col("embedder") == embedder)
        if verifier is not None:
            f = f.filter(pl.col("verifier") == verifier)
        if f.select("embedder", "verifier").n_unique() > 1:
            raise ConfigError(
                "this audit holds several configurations",
                hint=f"name one with embedder=... and verifier=..., or use operating_point(); audited: "
                f"{self.configs}",
            )
        return f

    @property
    def configs(self) -> list[tuple[str, str]]:
        """The audited (embedder, verifier) pairs."""
        rows = self.frame.select("embedder", "verifier").unique(maintain_order=True).iter_rows()
        return [(str(e), str(v)) for e, v in rows]

    def threshold_for(
        self,
        budget: float | None = None,
        *,
        per: Literal["hits", "queries"] = "hits",
        conservative: bool = False,
        embedder: str | None = None,
        verifier: str | None = None,
    ) -> float | None:
        """Smallest audited `min_cosine` whose false-hit rate is <= budget (None when none is), for one
        configuration (name it when several were audited).

        `per="hits"` bounds false hits / hits; `per="queries"` bounds false hits / queries.
        `conservative=True` bounds the upper end of the Wilson 95 % interval instead of the point estimate."""
        b = self.budget if budget is None else budget
        col = "false_hit_rate" if per == "hits" else "false_hits_per_query"
        if conservative:
            col += "_hi"
        ok = self._config(embedder, verifier).filter(pl.col(col) <= b).sort("min_cosine")
        return None if ok.is_empty() else float(ok["min_cosine"][0])

    def operating_point(
        self,
        budget: float | None = None,
        *,
        per: Literal["hits", "queries"] = "hits",
        conservative: bool = True,
        embedders: Sequence[str] | None = None,
        verifiers: Sequence[str] | None = None,
    ) -> dict[str, Any] | None:
        """The audited configuration with the highest recall whose false-hit rate (by default the upper end
        of its Wilson 95 % interval) is <= budget, as a row dict; None when none is. Ties go to the higher
        hit rate, then the cheaper verifier. `embedders` / `verifiers` restrict the choice (e.g. to what
        runs without optional packages)."""
        b = self.budget if budget is None else budget
        col = ("false_hit_rate" if per == "hits" else "false_hits_per_query") + (
            "_hi" if conservative else ""
        )
        f = self.frame.filter(pl.col(col) <= b)
        if embedders is not None:
            f = f.filter(pl.col("embedder").is_in(list(embedders)))
        if verifiers is not None:
            f = f.filter(pl.col("verifier").is_in(list(verifiers)))
        if f.is_empty():
            return None
        best = f.sort(["recall", "hit_rate", "verify_us"], descending=[True, True, False], nulls_last=True)
        return best.row(0, named=True)

    def best_per_config(
        self,
        budget: float | None = None,
        *,
        per: Literal["hits", "queries"] = "hits",
        conservative: bool = True,
    ) -> pl.DataFrame:
        """One row per (embedder, verifier): its best point within the budget, or its strictest audited
        threshold (flagged ``meets_budget=False``) when none meets it. The table behind "each embedder /
        verifier alone beside the default"."""
        rows = []
        for emb, ver in self.configs:
            point = self.operating_point(
                budget, per=per, conservative=conservative, embedders=[emb], verifiers=[ver]
            )
            if point is None:
                strict = self.frame.filter((pl.col("embedder") == emb) & (pl.col("verifier") == ver))
                point = strict.sort("min_cosine").row(-1, named=True) | {"meets_budget": False}
            else:
                point = point | {"meets_budget": True}
            rows.append(point)
        cols = [
            "embedder",
            "verifier",
            "min_cosine",
            "meets_budget",
            *RATE_COLUMNS,
            "verify_us",
            "embed_us",
            "lookup_us",
        ]
        return pl.DataFrame(rows).select(cols).sort("recall", descending=True)

    def by_category(
        self, min_cosine: float, *, embedder: str | None = None, verifier: str | None = None
    ) -> pl.DataFrame:
        """Hits and false hits per pair category at one audited threshold (of one configuration)."""
        q = self.queries.filter(pl.col("min_cosine") == min_cosine)
        if embedder is not None:
            q = q.filter(pl.col("embedder") == embedder)
        if verifier is not None:
            q = q.filter(pl.col("verifier") == verifier)
        if q.is_empty():
            raise ConfigError(f"min_cosine={min_cosine} was not audited", hint=f"audited: {self.thresholds}")
        if q.select("embedder", "verifier").n_unique() > 1:
            raise ConfigError("several configurations audited", hint="name one with embedder= and verifier=")
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
        return sorted({float(t) for t in self.frame["min_cosine"]})

    def summary(self) -> str:
        lines = [f"embedder {self.embedder}: pair AUC {self.pair_auc:.3f}, n={self.frame['n'][0]}"]
        for r in self.frame.iter_rows(named=True):
            lines.append(
                f"  {r['embedder']} + {r['verifier']} min_cosine {r['min_cosine']:.3f}: hit_rate "
                f"{r['hit_rate']:.3f}, false_hit_rate {r['false_hit_rate']:.3f} "
                f"[{r['false_hit_rate_lo']:.3f}, {r['false_hit_rate_hi']:.3f}], "
                f"false_hits_per_query {r['false_hits_per_query']:.3f}, "
                f"recall {r['recall']:.3f}"
            )
        point = self.operating_point()
        lines.append(
            f"  operating point for a {self.budget:.0%} false-hit budget (Wilson upper bound): "
            + (
                f"{point['embedder']} + {point['verifier']} at min_cosine {point['min_cosine']:g}, recall "
                f"{point['recall']:.3f}, false_hit_rate {point['false_hit_rate']:.3f} "
                f"(upper {point['false_hit_rate_hi']:.3f})"
                if point
                else "none audited"
            )
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


def _name(obj: Any, default: str) -> str:
    return str(obj.name) if obj is not None else default


def _as_named(items: Any, default: str) -> list[tuple[str, Any]]:
    if isinstance(items, Mapping):
        return [(str(k), v) for k, v in items.items()]
    if items is None or not isinstance(items, Sequence):
        return [(_name(items, default), items)]
    return [(_name(v, default), v) for v in items]


def measure_cost(verifier: Verifier, stored: Sequence[str], queries: Sequence[str], *, n: int = 100) -> float:
    """Mean microseconds of one `verifier.check` on a new query against an already stored text, over the
    `n` pairs (stored texts are primed first, as a cache primes them at store time). The mean, not
    the median: a verifier that is cheap on most pairs and slow on some costs its mean per lookup. The
    pairs are spread evenly over the frame."""
    prime = getattr(verifier, "prime", None)
    if callable(prime):
        prime(list(dict.fromkeys(stored)))
    pairs = list(zip(queries, stored, strict=True))
    step = max(1, len(pairs) // n)  # spread over the frame: files are often sorted by category
    times = []
    for q, c in pairs[::step][:n]:
        t0 = time.perf_counter_ns()
        verifier.check(q, c, 1.0)
        times.append(time.perf_counter_ns() - t0)
    return float(np.mean(times)) / 1e3 if times else float("nan")


def _embed_cost(embedder: Embedder, texts: Sequence[str], n: int = 100) -> float:
    """Median microseconds to embed one query (single-text calls, as a lookup makes them)."""
    times = []
    for t in list(dict.fromkeys(texts))[:n]:
        t0 = time.perf_counter_ns()
        embedder.embed([t])
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3 if times else float("nan")


def audit_semantic_cache(
    embedder: Embedder | Sequence[Embedder] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    pairs: pl.DataFrame | None = None,
    *,
    verifiers: Mapping[str, Verifier | None] | Sequence[Verifier | None] | Verifier | None = None,
    budget: float = 0.05,
    candidates: int = DEFAULT_CANDIDATES,
    tier_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> AuditResult:
    """Audit each embedder x verifier at each `min_cosine` in `thresholds` on `pairs` (any frame with
    columns a, b, same_answer; optional category; default: the fow-cache pairs).

    `embedder`: one or several (default: the static one). `verifiers`: one, several, or a mapping of
    name -> verifier; None (the default) audits without verification, and a None inside a list is the
    "no verifier" configuration. `candidates` go to `SemanticTier` with each threshold as its floor;
    `tier_options` too. `progress=None` shows a tqdm bar when the run has more than 2,000 lookups."""
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
    if frame["same_answer"].null_count():
        raise ConfigError(
            "same_answer has missing labels", hint="label every pair, or drop the unlabelled ones"
        )
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
    group_of_b = [groups.find(y) for y in b]
    stored_groups = set(group_of_a)
    answerable = [g in stored_groups for g in group_of_b]
    n_answerable = int(sum(answerable))
    keys = [f"pair-{i}" for i in range(n)]

    embedders = _as_named(embedder if embedder is not None else default_embedder(), "embedder")
    named_verifiers = _as_named(verifiers, "none")
    configs = len(embedders) * len(named_verifiers) * len(set(thresholds))
    show = progress if progress is not None else n * configs > 2000
    from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]

    verify_cost = {vname: measure_cost(v, a, b) for vname, v in named_verifiers if v is not None}
    costs: list[dict[str, Any]] = [
        {"kind": "verifier", "name": k, "us_per_call": us} for k, us in verify_cost.items()
    ]
    # Costs are measured above on cold queries; the sweep below then runs on primed verifiers (one batched
    # embedding call instead of one per query), which changes its speed, not its verdicts.
    for _, v in named_verifiers:
        prime = getattr(v, "prime", None)
        if callable(prime):
            prime(list(dict.fromkeys(a + b)))
    rows: list[dict[str, Any]] = []
    per_query: list[dict[str, Any]] = []
    pair_aucs: dict[str, float] = {}
    first_cos: npt.NDArray[np.float64] | None = None
    bar = tqdm(total=n * configs, desc="audit", disable=not show, leave=False)
    try:
        for ename, emb in embedders:
            embed_us = _embed_cost(emb, b)
            costs.append({"kind": "embedder", "name": ename, "us_per_call": embed_us})
            memo = _MemoEmbedder(emb)
            memo.prime(a + b)
            va, vb = memo.embed(a), memo.embed(b)
            pair_cos = np.einsum("ij,ij->i", va.astype(np.float64), vb.astype(np.float64))
            pair_aucs[ename] = _auc(pair_cos, same)
            first_cos = pair_cos if first_cos is None else first_cos
            for vname, ver in named_verifiers:
                for t in sorted(set(float(x) for x in thresholds)):
                    options: dict[str, Any] = {"early_exit_cosine": None, "candidates": candidates}
                    options.update(tier_options or {})
                    tier = SemanticTier(memo, min_cosine=t, verifier=ver, **options)
                    tier.add_vectors(_PARTITION, a, keys, va)
                    hits = correct = correct_answerable = 0
                    for i in range(n):
                        match = tier.lookup(_PARTITION, b[i])
                        ok = False
                        j = None
                        if match is not None:
                            j = int(match.key.removeprefix("pair-"))
                            ok = group_of_a[j] == group_of_b[i]
                            hits += 1
                            correct += ok
                            correct_answerable += ok and answerable[i]
                        per_query.append(
                            {
                                "embedder": ename,
                                "verifier": vname,
                                "min_cosine": t,
                                "pair": i,
                                "category": category[i],
                                "same_answer": bool(same[i]),
                                "pair_cosine": float(pair_cos[i]),
                                "hit": match is not None,
                                "similarity": match.similarity if match else None,
                                "matched_pair": j,
                                "correct": ok,
                            }
                        )
                        bar.update(1)
                    st = tier.stats()
                    false_hits = hits - correct
                    verify_us = verify_cost.get(vname, 0.0)
                    checks_per_lookup = st["checks"] / n
                    row: dict[str, Any] = {
                        "embedder": ename,
                        "verifier": vname,
                        "min_cosine": t,
                        "n": n,
                        "hits": hits,
                    }
                    row |= _rate_columns("hit_rate", hits, n)
                    row |= {"correct_hits": correct, "false_hits": false_hits}
                    row |= _rate_columns("false_hit_rate", false_hits, hits)
                    row |= _rate_columns("false_hits_per_query", false_hits, n)
                    row |= {"answerable": n_answerable}
                    row |= _rate_columns("recall", correct_answerable, n_answerable)
                    row |= {
                        "candidates_per_lookup": st["candidates"] / n,
                        "checks_per_lookup": checks_per_lookup,
                        "rejected": int(st["rejected"]),
                        "embed_us": embed_us,
                        "search_us": st["search_us"],
                        "verify_us": verify_us,
                        # measured parts: one query embedding + the index search + the checks it made
                        "lookup_us": embed_us + st["search_us"] + checks_per_lookup * verify_us,
                    }
                    rows.append(row)
    finally:
        bar.close()

    assert first_cos is not None
    pairs_frame = pl.DataFrame(
        {"a": a, "b": b, "category": category, "same_answer": same.tolist(), "cosine": first_cos.tolist()}
    )
    return AuditResult(
        embedder=embedders[0][0],
        budget=budget,
        frame=pl.DataFrame(rows),
        queries=pl.DataFrame(per_query),
        pairs=pairs_frame,
        pair_auc=pair_aucs[embedders[0][0]],
        conflicts=conflicts,
        pair_aucs=pair_aucs,
        costs=pl.DataFrame(costs),
    )
