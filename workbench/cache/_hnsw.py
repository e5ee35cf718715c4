"""`AnnIndex`: HNSW (hnswlib) over a PCA projection of the vectors, re-ranked exactly on the full vectors.

Why this shape (``benchmarks/cache_lookup.py``, 1M prompt-like entries embedded by the static embedder,
hit-like queries, one thread, quiet 2-core machine):

- hnswlib on the full 256 float32 dimensions, M=16, ef_construction=200: ef=128 -> 313 us p50 at recall@1
  0.968 against brute force. M=32 (build 323 s): ef=64 -> 245 us at 0.982, barely the 250 us / 0.98 target.
  About 2 % of the stored vectors were not even found when searched for with themselves: the graph, not the
  distance kernel, was the limit. usearch (float16, M=16, ef_construction=64) was slower and less exact
  still: ef=256 -> 903 us at 0.948.
- Same graph built on the top principal components, 8 candidates re-ranked by their exact cosine: 128
  components (88 % of the variance): ef=32 -> 145 us at 0.982, ef=48 -> 177 us at 0.988; 96 components
  (80 %): ef=32 -> 112 us at 0.990, ef=48 -> 145 us at 0.994. The dropped components are mostly noise for
  neighbour search, so the graph navigates better, and each distance costs less.

The projection (mean and components) is fitted once, on the first `add` (up to `fit_rows` of its vectors,
sampled), when that batch holds at least `min_fit_rows` vectors (`AutoIndex` moves 10k at once). With
``reduce_to="auto"`` (the default) it keeps the fewest components holding `keep_variance` (0.80) of the
variance, at least 16; when that is more than half of the dimensions (unstructured data, such as random
vectors, where a projection would lose neighbours) there is no projection. An int sets the count. A smaller
first batch, `reduce_to=None` or a count >= dim: no projection, the graph holds the full vectors.

Returned similarities are always exact float32 dot products of the full vectors (a threshold decision never
rests on an approximation). Memory per entry at dim 256: 1 KiB for the full vector plus 0.5 KiB projected plus
the graph's links (~0.3 KiB at M=32).

Removal marks the entry deleted in the graph (still walked, never returned) and frees its full-vector row.
Deleted graph slots are not reused: hnswlib's `replace_deleted` left re-added entries unreachable under heavy
churn (a 200-entry test lost one even at ef=400). Instead, once deleted slots outnumber live entries (and are
at least `rebuild_after`), a background thread builds a fresh graph from a snapshot while searches go on
against the old one; entries added or removed meanwhile are reconciled when the new graph is swapped in.
Callers' ids map to internal labels, renumbered by each rebuild. All calls share one lock: hnswlib's
`resize_index` and `mark_deleted` must not overlap a search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from workbench._exceptions import ConfigError
from workbench.cache._vectors import EMPTY, Ids, Sims, Vec, as_batch, as_query, top_k

log = logging.getLogger("workbench.cache")

__all__ = ["DEFAULT_EF", "DEFAULT_EF_CONSTRUCTION", "DEFAULT_M", "AnnIndex"]

DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 32
DEFAULT_RERANK = 8


def _grow(arr: npt.NDArray[Any], need: int, fill: float | int) -> npt.NDArray[Any]:
    if need <= len(arr):
        return arr
    out = np.full((max(2 * len(arr), need), *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


class AnnIndex:
    """Approximate nearest neighbours by cosine: HNSW on a PCA projection, exact re-rank of `rerank` hits."""

    def __init__(
        self,
        dim: int,
        *,
        connectivity: int = DEFAULT_M,
        expansion_add: int = DEFAULT_EF_CONSTRUCTION,
        expansion_search: int = DEFAULT_EF,
        reduce_to: int | Literal["auto"] | None = "auto",
        keep_variance: float = 0.80,
        rerank: int = DEFAULT_RERANK,
        min_fit_rows: int = 2000,
        fit_rows: int = 20_000,
        threads: int = 0,
        initial_capacity: int = 1024,
        rebuild_after: int = 1000,
    ) -> None:
        try:
            import hnswlib  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - hnswlib is a core dependency
            raise ConfigError("the ANN index needs hnswlib", hint="pip install hnswlib") from exc
        if dim <= 0 or connectivity < 2 or expansion_add < 1 or expansion_search < 1 or rerank < 1:
            raise ConfigError("dim, connectivity (>= 2), the expansions and rerank must be positive")
        self._hnswlib = hnswlib
        self._dim = dim
        self._m, self._efc, self._ef = connectivity, expansion_add, expansion_search
        if reduce_to is not None and reduce_to != "auto" and not 1 <= reduce_to:
            raise ConfigError(f"reduce_to must be a positive count, 'auto' or None, got {reduce_to!r}")
        if not 0.0 < keep_variance <= 1.0:
            raise ConfigError(f"keep_variance must lie in (0, 1], got {keep_variance}")
        self._reduce_to: int | Literal["auto"] | None = (
            None if isinstance(reduce_to, int) and reduce_to >= dim else reduce_to
        )
        self.keep_variance = keep_variance
        self.rerank = rerank
        self._min_fit, self._fit_rows = max(min_fit_rows, 2 * min(dim, 256)), fit_rows
        self._threads = threads if threads > 0 else -1
        self._cap0 = max(16, initial_capacity)
        self._mean: Vec | None = None
        self._proj: Vec | None = None  # (dim, reduce_to)
        self._graph: Any = None  # built by the first add (its dimension depends on the projection)
        self._full = np.zeros((self._cap0, dim), np.float32)  # rows of full vectors
        self._free_rows: list[int] = []
        self._rows_used = 0
        self._label_of: dict[int, int] = {}  # caller's id -> live label
        self._id_of = np.full(self._cap0, -1, np.int64)  # label -> caller's id (-1: removed)
        self._row_of = np.full(self._cap0, -1, np.int64)  # label -> row of _full
        self._next_label = 0
        self._deleted = 0  # graph slots marked deleted
        self.rebuild_after = rebuild_after
        self._rebuilding: threading.Thread | None = None
        self._touched: set[int] = set()  # ids added while a rebuild runs
        self.rebuilds = 0
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def projected_dim(self) -> int:
        """Dimensions the graph holds: `reduce_to` once the projection is fitted, else `dim`."""
        return self._dim if self._proj is None else int(self._proj.shape[1])

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, id: object) -> bool:
        return id in self._label_of

    @property
    def expansion_search(self) -> int:
        return self._ef

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        with self._lock:
            self._ef = value
            if self._graph is not None:
                self._graph.set_ef(value)

    # building ---------------------------------------------------------------------------------------------

    def _project(self, vecs: Vec) -> Vec:
        if self._proj is None or self._mean is None:
            return np.ascontiguousarray(vecs)
        out = (vecs - self._mean) @ self._proj
        return out.astype(np.float32, copy=False)

    def _new_graph(self, dim: int, capacity: int) -> Any:
        # Unit vectors: cosine order == inner-product order; projected vectors are not unit, so those use L2,
        # whose order on the projection follows the full vectors' cosine order up to the dropped residual.
        g = self._hnswlib.Index(space="l2" if self._proj is not None else "ip", dim=dim)
        g.init_index(
            max_elements=capacity,
            M=self._m,
            ef_construction=self._efc,
            random_seed=100,
        )
        g.set_ef(self._ef)
        return g

    def _fit_locked(self, vecs: Vec) -> None:
        """Fit the projection on `vecs` (a sample of them) and build the graph with what is stored so far."""
        if self._reduce_to is not None and len(vecs) >= self._min_fit:
            pick = np.random.default_rng(0).choice(len(vecs), min(len(vecs), self._fit_rows), replace=False)
            sample = vecs[np.sort(pick)]
            mean = sample.mean(axis=0, dtype=np.float64)
            _, sv, vt = np.linalg.svd(sample - mean, full_matrices=False)
            if self._reduce_to == "auto":
                share = np.cumsum(sv.astype(np.float64) ** 2) / float(np.sum(sv.astype(np.float64) ** 2))
                keep = max(16, int(np.searchsorted(share, self.keep_variance)) + 1)
                keep = keep if keep <= self._dim // 2 else 0
            else:
                keep = self._reduce_to
            if keep:
                self._mean = mean.astype(np.float32)
                self._proj = np.ascontiguousarray(vt[:keep].T, dtype=np.float32)
        self._graph = self._new_graph(self.projected_dim, max(self._cap0, len(vecs)))

    def add(self, ids: int | Sequence[int] | Ids, vectors: npt.ArrayLike) -> None:
        id_arr, vecs = as_batch(ids, vectors, self._dim)
        with self._lock:
            if self._graph is None:
                self._fit_locked(vecs)
            for i in id_arr.tolist():
                if i in self._label_of:
                    self._remove_locked(i)
            n_new = len(id_arr)
            g = self._graph
            cap = int(g.get_max_elements())
            if g.element_count + n_new > cap:
                g.resize_index(max(2 * cap, g.element_count + n_new))
            labels = np.arange(self._next_label, self._next_label + n_new, dtype=np.int64)
            rows = self._take_rows(n_new)
            self._full[rows] = vecs
            self._id_of = _grow(self._id_of, self._next_label + n_new, -1)
            self._row_of = _grow(self._row_of, self._next_label + n_new, -1)
            g.add_items(self._project(vecs), labels, num_threads=self._threads)
            self._next_label += n_new
            self._id_of[labels] = id_arr
            self._row_of[labels] = rows
            self._label_of.update(zip(id_arr.tolist(), labels.tolist(), strict=True))
            if self._rebuilding is not None:
                self._touched.update(id_arr.tolist())
            self._maybe_rebuild_locked()

    def _take_rows(self, n: int) -> npt.NDArray[np.int64]:
        take = min(n, len(self._free_rows))
        reused = [self._free_rows.pop() for _ in range(take)]
        fresh = np.arange(self._rows_used, self._rows_used + n - take, dtype=np.int64)
        self._rows_used += n - take
        self._full = _grow(self._full, self._rows_used, 0.0)
        return np.concatenate([np.asarray(reused, np.int64), fresh])

    def remove(self, id: int) -> bool:
        with self._lock:
            if id not in self._label_of:
                return False
            self._remove_locked(id)
            self._maybe_rebuild_locked()
            return True

    def _remove_locked(self, id: int) -> None:
        label = self._label_of.pop(id)
        self._graph.mark_deleted(label)
        self._free_rows.append(int(self._row_of[label]))
        self._id_of[label] = -1
        self._row_of[label] = -1
        self._deleted += 1

    # rebuilding -------------------------------------------------------------------------------------------

    def _maybe_rebuild_locked(self) -> None:
        if (
            self._rebuilding is None
            and self._deleted >= self.rebuild_after
            and self._deleted > len(self._label_of)
        ):
            self._touched = set()
            self._rebuilding = threading.Thread(target=self._rebuild, name="ann-rebuild", daemon=True)
            self._rebuilding.start()

    def join_rebuild(self, timeout: float | None = None) -> bool:
        """Wait for a running rebuild; True when none is running (any more)."""
        t = self._rebuilding
        if t is not None:
            t.join(timeout)
        return self._rebuilding is None

    def _rebuild(self) -> None:
        try:
            with self._lock:
                ids = list(self._label_of)
                rows = self._row_of[np.fromiter(self._label_of.values(), np.int64, len(ids))]
                vecs = self._full[rows]  # a copy: rows may be freed and reused while the graph is built
            g = self._new_graph(self.projected_dim, max(self._cap0, len(ids) + len(ids) // 4))
            if ids:
                g.add_items(self._project(vecs), np.arange(len(ids)), num_threads=self._threads)
            with self._lock:
                self._swap_locked(g, ids)
        except Exception:  # pragma: no cover - keep serving from the old graph
            log.exception("ANN index rebuild failed; the old graph stays in use")
        finally:
            self._rebuilding = None

    def _swap_locked(self, g: Any, snap_ids: list[int]) -> None:
        """Reconcile the snapshot graph with what changed during the build, then publish it."""
        live, touched = self._label_of, self._touched
        label_of: dict[int, int] = {}
        deleted = 0
        for label, id_ in enumerate(snap_ids):
            if id_ in live and id_ not in touched:
                label_of[id_] = label
            else:  # removed or replaced during the build
                g.mark_deleted(label)
                deleted += 1
        late = [i for i in live if i not in label_of]
        n = len(snap_ids) + len(late)
        if late:
            late_rows = self._row_of[np.fromiter((live[i] for i in late), np.int64, len(late))]
            if n > int(g.get_max_elements()):
                g.resize_index(n)
            g.add_items(self._project(self._full[late_rows]), np.arange(len(snap_ids), n))
            label_of.update(zip(late, range(len(snap_ids), n), strict=True))
        id_of = np.full(max(self._cap0, n), -1, np.int64)
        row_of = np.full(max(self._cap0, n), -1, np.int64)
        for id_, label in label_of.items():
            id_of[label] = id_
            row_of[label] = self._row_of[live[id_]]
        self._graph, self._label_of, self._id_of, self._row_of = g, label_of, id_of, row_of
        self._next_label, self._deleted, self._touched = n, deleted, set()
        self.rebuilds += 1

    # searching --------------------------------------------------------------------------------------------

    def search(self, vector: npt.ArrayLike, k: int = 1) -> tuple[Ids, Sims]:
        q = as_query(vector, self._dim)
        with self._lock:
            live = len(self._label_of)
            if k <= 0 or live == 0:
                return EMPTY
            k = min(k, live)
            want = min(max(k, self.rerank), live)
            try:
                labels, _ = self._graph.knn_query(self._project(q[None, :]), k=want, num_threads=1)
            except RuntimeError:  # hnswlib found fewer than `want` live entries (many deleted nearby)
                labels, _ = self._graph.knn_query(self._project(q[None, :]), k=k, num_threads=1)
            labels = labels.reshape(-1).astype(np.int64)
            sims: Sims = self._full[self._row_of[labels]] @ q
            ids = self._id_of[labels]
        order = top_k(sims, k)
        return ids[order], sims[order]
