"""The semantic tier: a stored answer is reused when a new prompt's embedding is close enough to a stored one
*and a verifier accepts the pair*.

A lookup has two stages. The vector index returns up to `candidates` stored prompts whose cosine
similarity to the query is at least `min_cosine` (the floor; cosine in [-1, 1] everywhere); the verifier
(`workbench.cache.verify`) checks them best first and the first it accepts is the hit. The verifier never
runs on a query with no candidate above the floor, so misses stay as cheap as the index search.
`early_exit_cosine` (>= `min_cosine`) lets a brute-force scan stop at the first block holding a match that
good.

The default (`SemanticTier()`) is the static embedder, the `TrapGuard` verifier and ``min_cosine`` =
`DEFAULT_MIN_COSINE`: the configuration that `workbench.cache.audit` picks on the fow-cache pairs for a 5 %
false-hit budget (upper end of the Wilson interval) with the highest recall among those that need no
optional package. `verifier=None` turns verification off (an index-only cache: the audit shows what that
serves).

Entries live in one vector index per *partition* (the cache core's `partition_key`: everything in the
request but the last user turn: backend, model, sampling parameters, system prompt and earlier turns), so
a prompt can only match prompts asked in the same context: the same text in another partition never
matches. A lookup in a partition with no entries returns at once, without embedding the text.

Lookups take no tier lock (brute-force indices publish immutable snapshots; an HNSW index serialises
searches on its own lock); `add` and `remove` serialise on the tier's lock. `stats()` / `stats_frame()`
report the lookup time split into embedding, search and verification (microseconds, from lock-free
per-thread counters) and the p50 / p99 of whole lookups; `served()` lists recent hits for an audit of your
own traffic (`workbench.cache.audit.served_pairs`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from workbench._exceptions import ConfigError
from workbench.cache.counters import Counters
from workbench.cache.embedders import Embedder, default_embedder
from workbench.cache.index import ANN_THRESHOLD, AutoIndex, VectorIndex
from workbench.cache.verify import TrapGuard, Verdict, Verifier

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_MIN_COSINE", "SemanticMatch", "SemanticTier", "ServedHit"]

# The default floor, chosen by `workbench.cache.audit.audit_semantic_cache` on the 600 fow-cache pairs with
# the static embedder and the TrapGuard verifier: the highest recall whose false-hit rate has a Wilson 95 %
# upper bound <= 5 % (1 wrong of 110 hits, bound 4.97 %, recall 33 %; tests/cache/test_audit_semantic.py
# re-derives it). Without a verifier no floor up to 0.99 meets that budget with this embedder: the verifier
# does the work, the floor keeps unrelated questions out.
DEFAULT_MIN_COSINE = 0.90
# How many candidates above the floor the verifier may check: a rejected near-duplicate ("closed" for
# "open") often sits above the right answer, so looking past the first one keeps recall.
DEFAULT_CANDIDATES = 4
_STAGES = (
    "lookups",
    "hits",
    "misses",
    "empty",
    "candidates",
    "checks",
    "rejected",
    "embed_ns",
    "search_ns",
    "verify_ns",
    "total_ns",
)


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A semantic hit: the stored entry's cache key, its cosine similarity to the query, its text, the
    verifier's verdict (None without a verifier), how many candidates were checked, and the lookup's time
    (embedding, search and verification included) in microseconds."""

    key: str
    similarity: float
    matched_text: str
    verdict: Verdict | None = None
    checked: int = 0
    lookup_us: float = 0.0


class ServedHit(NamedTuple):
    """One served semantic hit, kept for auditing: the query, the stored text it was answered with."""

    t_ns: int
    partition: str
    query: str
    matched: str
    similarity: float
    key: str


class _Entry(NamedTuple):
    partition: str
    id: int
    text: str


class SemanticTier:
    """Embedding-similarity lookup per partition, verified. Holds keys and texts; the answers live in the
    cache core."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        min_cosine: float = DEFAULT_MIN_COSINE,
        verifier: Verifier | Literal["default"] | None = "default",
        candidates: int = DEFAULT_CANDIDATES,
        early_exit_cosine: float | None = 0.98,
        ann_threshold: int | None = ANN_THRESHOLD,
        index_factory: Callable[[int], VectorIndex] | None = None,
        served_log: int = 10_000,
    ) -> None:
        if not -1.0 <= min_cosine <= 1.0:
            raise ConfigError(f"min_cosine must be a cosine similarity in [-1, 1], got {min_cosine}")
        if early_exit_cosine is not None and not min_cosine <= early_exit_cosine <= 1.0:
            raise ConfigError(
                f"early_exit_cosine={early_exit_cosine} must lie in [min_cosine={min_cosine}, 1]",
                hint="an early exit below the hit bar could stop on a miss; pass None to scan everything",
            )
        if candidates < 1:
            raise ConfigError(f"candidates must be at least 1, got {candidates}")
        self.embedder: Embedder = embedder if embedder is not None else default_embedder()
        self.min_cosine = min_cosine
        self.verifier: Verifier | None = TrapGuard().warm() if verifier == "default" else verifier
        # Without a verifier only the best candidate can be the answer: looking at more buys nothing.
        self.candidates = candidates if self.verifier is not None else 1
        self.early_exit_cosine = early_exit_cosine
        self.ann_threshold = ann_threshold
        self._factory = index_factory
        self._indices: dict[str, VectorIndex] = {}
        self._entries: dict[str, _Entry] = {}
        self._keys: dict[int, str] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.counters = Counters(_STAGES)
        # deque appends are atomic: the lookup path stays lock-free
        self._recent_us: deque[float] = deque(maxlen=10_000)
        self._served: deque[ServedHit] = deque(maxlen=served_log)

    def __repr__(self) -> str:
        v = self.verifier.name if self.verifier is not None else None
        return (
            f"SemanticTier(embedder={self.embedder.name!r}, min_cosine={self.min_cosine}, verifier={v!r}, "
            f"entries={len(self)}, partitions={len(self._indices)})"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def partitions(self) -> int:
        return len(self._indices)

    @property
    def config(self) -> dict[str, Any]:
        """embedder, verifier and min_cosine: what an audit row calls this configuration."""
        return {
            "embedder": self.embedder.name,
            "verifier": self.verifier.name if self.verifier is not None else "none",
            "min_cosine": self.min_cosine,
        }

    def _new_index(self) -> VectorIndex:
        if self._factory is not None:
            return self._factory(self.embedder.dim)
        return AutoIndex(
            self.embedder.dim, ann_threshold=self.ann_threshold, early_exit_cosine=self.early_exit_cosine
        )

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.embedder.embed(texts)

    # lookups -------------------------------------------------------------------------------------------

    def lookup(self, partition: str, text: str) -> SemanticMatch | None:
        """The best stored entry in `partition` with cosine >= min_cosine that the verifier accepts, or
        None."""
        t0 = time.perf_counter_ns()
        index = self._indices.get(partition)
        if index is None or len(index) == 0:
            self._count_empty(t0)
            return None
        vector = self.embedder.embed([text])[0]
        t1 = time.perf_counter_ns()
        self.counters.incr("embed_ns", t1 - t0)
        return self._best(partition, index, vector, text, t0, t1)

    def lookup_vector(
        self, partition: str, vector: npt.ArrayLike, text: str | None = None
    ) -> SemanticMatch | None:
        """As `lookup`, for an already embedded (unit) query vector. The verifier needs the query's
        `text`; a tier with a verifier refuses a lookup without it."""
        if text is None and self.verifier is not None:
            raise ConfigError(
                "lookup_vector without the query text cannot be verified",
                hint="pass text=..., or build the tier with verifier=None (an unverified, index-only cache)",
            )
        t0 = time.perf_counter_ns()
        index = self._indices.get(partition)
        if index is None or len(index) == 0:
            self._count_empty(t0)
            return None
        return self._best(partition, index, np.asarray(vector, dtype=np.float32), text or "", t0, t0)

    def _count_empty(self, t0: int) -> None:
        c = self.counters
        c.incr("lookups")
        c.incr("misses")
        c.incr("empty")
        dt = time.perf_counter_ns() - t0
        c.incr("total_ns", dt)
        self._recent_us.append(dt / 1e3)

    def _best(
        self, partition: str, index: VectorIndex, vector: npt.NDArray[np.float32], text: str, t0: int, t1: int
    ) -> SemanticMatch | None:
        c = self.counters
        ids, sims = index.search(vector, self.candidates)
        t2 = time.perf_counter_ns()
        c.incr("search_ns", t2 - t1)
        found: SemanticMatch | None = None
        above = 0
        checked = 0
        for id_, sim in zip(ids.tolist(), sims.tolist(), strict=True):
            if not sim >= self.min_cosine:
                break  # best first: the rest are lower
            above += 1
            key = self._keys.get(int(id_))
            entry = self._entries.get(key) if key is not None else None
            if entry is None or key is None:  # removed while this lookup ran
                continue
            verdict: Verdict | None = None
            if self.verifier is not None:
                checked += 1
                verdict = self.verifier.check(text, entry.text, float(sim))
                if not verdict.accept:
                    c.incr("rejected")
                    continue
            found = SemanticMatch(key, float(sim), entry.text, verdict, checked)
            break
        t3 = time.perf_counter_ns()
        c.incr("verify_ns", t3 - t2)
        c.incr("candidates", above)
        c.incr("checks", checked)
        c.incr("lookups")
        c.incr("hits" if found is not None else "misses")
        total = t3 - t0
        c.incr("total_ns", total)
        self._recent_us.append(total / 1e3)
        if found is None:
            return None
        self._served.append(ServedHit(t3, partition, text, found.matched_text, found.similarity, found.key))
        return SemanticMatch(
            found.key, found.similarity, found.matched_text, found.verdict, found.checked, total / 1e3
        )

    # statistics ----------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Counts (lookups, hits, misses, empty partitions, candidates above the floor, verifier checks and
        rejections) and mean microseconds per lookup for each stage (embed_us, search_us, verify_us,
        lookup_us; means over lookups that reached the stage), plus lookup_us_p50 / _p99 over the recent
        lookups."""
        s = self.counters.snapshot()
        reached = s["lookups"] - s["empty"]
        out: dict[str, float] = {k: float(s[k]) for k in _STAGES if not k.endswith("_ns")}
        for stage in ("embed", "search", "verify"):
            out[f"{stage}_us"] = s[f"{stage}_ns"] / 1e3 / reached if reached else float("nan")
        out["lookup_us"] = s["total_ns"] / 1e3 / s["lookups"] if s["lookups"] else float("nan")
        recent = np.asarray(list(self._recent_us), dtype=np.float64)
        out["lookup_us_p50"] = float(np.percentile(recent, 50)) if len(recent) else float("nan")
        out["lookup_us_p99"] = float(np.percentile(recent, 99)) if len(recent) else float("nan")
        out["hit_rate"] = s["hits"] / s["lookups"] if s["lookups"] else float("nan")
        out["rejected_share"] = s["rejected"] / s["checks"] if s["checks"] else float("nan")
        return out

    def stats_frame(self) -> pl.DataFrame:
        """`stats()` as one row, with the configuration (embedder, verifier, min_cosine) beside it."""
        return pl.DataFrame([self.config | self.stats()])

    def served(self, n: int | None = None) -> pl.DataFrame:
        """The most recent served hits (oldest first): t_ns, partition, query, matched, similarity, key."""
        rows = list(self._served)[-n:] if n else list(self._served)
        schema = {
            "t_ns": pl.Int64,
            "partition": pl.Utf8,
            "query": pl.Utf8,
            "matched": pl.Utf8,
            "similarity": pl.Float64,
            "key": pl.Utf8,
        }
        return pl.DataFrame([r._asdict() for r in rows], schema=schema)

    def reset_stats(self) -> None:
        self.counters.reset()
        self._recent_us.clear()

    # mutations -----------------------------------------------------------------------------------------

    def add(self, partition: str, text: str, key: str) -> None:
        """Store `text` under cache `key` in `partition` (a key stored again replaces its old entry)."""
        self.add_vectors(partition, [text], [key], self.embedder.embed([text]))

    def add_many(self, partition: str, texts: Sequence[str], keys: Sequence[str]) -> None:
        """Store several texts in one partition with one batched embedding call."""
        if len(texts) != len(keys):
            raise ConfigError(f"{len(texts)} texts for {len(keys)} keys")
        if texts:
            self.add_vectors(partition, texts, keys, self.embedder.embed(texts))

    def add_vectors(
        self, partition: str, texts: Sequence[str], keys: Sequence[str], vectors: npt.ArrayLike
    ) -> None:
        """Store already embedded texts (unit vectors, one row per text)."""
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape != (len(texts), self.embedder.dim) or len(keys) != len(texts):
            raise ConfigError(
                f"{len(texts)} texts, {len(keys)} keys and vectors of shape {vecs.shape} do not match "
                f"(embedder dim {self.embedder.dim})"
            )
        if len(set(keys)) != len(keys):
            raise ConfigError("duplicate keys in one add call")
        with self._lock:
            for key in keys:
                self._remove_locked(key)
            index = self._indices.get(partition)
            if index is None:
                index = self._indices[partition] = self._new_index()
            ids = [next(self._ids) for _ in keys]
            # Maps first, index last: a reader can find an id only once its key is resolvable.
            for id_, key, text in zip(ids, keys, texts, strict=True):
                self._keys[id_] = key
                self._entries[key] = _Entry(partition, id_, text)
            index.add(ids, vecs)

    def remove(self, key: str) -> None:
        """Forget `key` (no-op when absent), e.g. when the cache core evicts or expires it."""
        with self._lock:
            self._remove_locked(key)

    def _remove_locked(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        index = self._indices.get(entry.partition)
        if index is not None:
            index.remove(entry.id)
            if len(index) == 0:
                del self._indices[entry.partition]
        self._keys.pop(entry.id, None)

    def clear(self) -> None:
        with self._lock:
            self._indices.clear()
            self._entries.clear()
            self._keys.clear()
