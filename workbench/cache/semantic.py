"""The semantic tier: a stored answer is reused when a new prompt's embedding is close enough to a stored one.

One threshold scale: cosine similarity in [-1, 1], called `min_cosine` everywhere (a hit needs
``cosine >= min_cosine``). `early_exit_cosine` (>= `min_cosine`) lets a brute-force scan stop at the first
block holding a match that good.

Entries live in one vector index per *partition* (the cache core's `partition_key`: everything in the
request but the last user turn), so a prompt can only match prompts asked of the same backend and model with
the same parameters and history: the same text in another partition never matches. A lookup in a partition
with no entries returns at once, without embedding the text.

Lookups take no tier lock (brute-force indices publish immutable snapshots; an HNSW index serialises
searches on its own lock); `add` and `remove` serialise on the tier's lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from workbench._exceptions import ConfigError
from workbench.cache.embedders import Embedder, default_embedder
from workbench.cache.index import ANN_THRESHOLD, AutoIndex, VectorIndex

__all__ = ["DEFAULT_MIN_COSINE", "SemanticMatch", "SemanticTier"]

# Default bar: high, because a wrong cached answer costs more than a miss. On the fow-cache pairs (half of
# them one-word traps) the static default embedder serves 37 % wrong answers among its hits at 0.90 and 35 %
# at 0.95 while near repeats still hit (52 of 100 at 0.95); MiniLM: 31 % and 20 %. No cosine bar makes a
# bag-of-meaning embedder safe against negation or number swaps: audit_semantic_cache() measures your data.
DEFAULT_MIN_COSINE = 0.95


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A semantic hit: the stored entry's cache key, its cosine similarity to the query, and its text."""

    key: str
    similarity: float
    matched_text: str


class _Entry(NamedTuple):
    partition: str
    id: int
    text: str


class SemanticTier:
    """Embedding-similarity lookup per partition. Holds keys and texts; the answers live in the cache core."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        min_cosine: float = DEFAULT_MIN_COSINE,
        early_exit_cosine: float | None = 0.98,
        ann_threshold: int | None = ANN_THRESHOLD,
        index_factory: Callable[[int], VectorIndex] | None = None,
    ) -> None:
        if not -1.0 <= min_cosine <= 1.0:
            raise ConfigError(f"min_cosine must be a cosine similarity in [-1, 1], got {min_cosine}")
        if early_exit_cosine is not None and not min_cosine <= early_exit_cosine <= 1.0:
            raise ConfigError(
                f"early_exit_cosine={early_exit_cosine} must lie in [min_cosine={min_cosine}, 1]",
                hint="an early exit below the hit bar could stop on a miss; pass None to scan everything",
            )
        self.embedder: Embedder = embedder if embedder is not None else default_embedder()
        self.min_cosine = min_cosine
        self.early_exit_cosine = early_exit_cosine
        self.ann_threshold = ann_threshold
        self._factory = index_factory
        self._indices: dict[str, VectorIndex] = {}
        self._entries: dict[str, _Entry] = {}
        self._keys: dict[int, str] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SemanticTier(embedder={self.embedder.name!r}, min_cosine={self.min_cosine}, "
            f"entries={len(self)}, partitions={len(self._indices)})"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def partitions(self) -> int:
        return len(self._indices)

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
        """The best stored entry in `partition` with cosine >= min_cosine, or None."""
        index = self._indices.get(partition)
        if index is None or len(index) == 0:
            return None
        return self._best(index, self.embedder.embed([text])[0])

    def lookup_vector(self, partition: str, vector: npt.ArrayLike) -> SemanticMatch | None:
        """As `lookup`, for an already embedded (unit) query vector."""
        index = self._indices.get(partition)
        if index is None or len(index) == 0:
            return None
        return self._best(index, np.asarray(vector, dtype=np.float32))

    def _best(self, index: VectorIndex, vector: npt.NDArray[np.float32]) -> SemanticMatch | None:
        ids, sims = index.search(vector, 1)
        if len(ids) == 0 or not sims[0] >= self.min_cosine:
            return None
        key = self._keys.get(int(ids[0]))
        entry = self._entries.get(key) if key is not None else None
        if entry is None or key is None:  # removed while this lookup ran
            return None
        return SemanticMatch(key=key, similarity=float(sims[0]), matched_text=entry.text)

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
