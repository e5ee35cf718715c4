"""Vector indices for the semantic cache: exact brute force, HNSW (hnswlib), and one that switches.

All three speak `VectorIndex`: ``add(ids, vectors)``, ``search(vector, k) -> (ids, sims)`` (best first, cosine
similarity, at most k), ``remove(id) -> bool``, ``len()``. Vectors must be L2-normalised float32, so the inner
product is the cosine.

`BruteForceIndex` keeps one preallocated float32 matrix, grown by doubling, and answers a query with one
matrix-vector product. With `early_exit_cosine` set it scans in blocks of `block_rows` and stops at the first
block holding a match at or above that bar (a near-duplicate is good enough; the best one may sit later).
Reads take no lock: the matrix, id column and row count are published together as one immutable snapshot,
appends write rows past the published count before publishing, and a removal turns its row into a tombstone
(id -1, zero vector) that searches skip; tombstones are compacted away under the write lock. The matvec runs
on one BLAS thread (OpenBLAS's thread-local setting, restored after each call; see `_matvec` for why).

`AnnIndex` (in `_hnsw`) is HNSW through hnswlib on a PCA projection of the vectors, with the candidates
re-ranked on the exact full vectors; its docstring has the measurements behind that choice (usearch and
plain hnswlib on the full vectors were slower at the same recall on 1M prompt-like entries), and an IVF
(1024 k-means lists) did no better than usearch (recall 0.95 at 850 us).
`AutoIndex` is brute force until `ann_threshold` entries, then moves everything into an `AnnIndex`
(``benchmarks/cache_lookup.py`` measures where brute force stops being faster: that is the default).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from workbench._exceptions import ConfigError
from workbench.cache._hnsw import AnnIndex
from workbench.cache._vectors import EMPTY, Ids, Sims, Vec, as_batch, as_query, top_k

__all__ = ["ANN_THRESHOLD", "AnnIndex", "AutoIndex", "BruteForceIndex", "VectorIndex"]

# Size at which AutoIndex moves to HNSW. benchmarks/cache_lookup.py, prompt-like corpus, 256 dims, one thread:
# brute force p50 21 us at 1k, 119 us at 10k, 909 us at 30k (the matrix leaves the cache); HNSW 29 us at 10k
# and 58 us at 30k with recall@1 0.994. Below the threshold answers are exact and cost at most ~120 us.
ANN_THRESHOLD = 10_000


@runtime_checkable
class VectorIndex(Protocol):
    """A set of (int id, unit vector) pairs searchable by cosine similarity."""

    @property
    def dim(self) -> int: ...

    def add(self, ids: int | Sequence[int] | Ids, vectors: npt.ArrayLike) -> None: ...

    def search(self, vector: npt.ArrayLike, k: int = 1) -> tuple[Ids, Sims]: ...

    def remove(self, id: int) -> bool: ...

    def __len__(self) -> int: ...


def _find_blas_local_threads() -> Callable[[int], int] | None:
    """OpenBLAS's ``openblas_set_num_threads_local`` (thread-local, OpenBLAS >= 0.3.27) from the library numpy
    loaded, or None (other BLAS, other OS): then matvecs use BLAS's own threading."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
        for path in sorted(paths):
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = ctypes.c_int
                return cast("Callable[[int], int]", fn)
    except OSError:
        pass
    return None


_blas_local: Callable[[int], int] | None = _find_blas_local_threads()


def _matvec(mat: Vec, q: Vec, single_thread: bool) -> Sims:
    """``mat @ q``, on one BLAS thread when asked. Why: OpenBLAS splits any sgemv over ~9k elements across
    its threads and then waits for all of them; on busy cores the second thread is often not scheduled for a
    whole time slice. Measured at 30k x 256 on this 2-core machine under load: p50 5.4-8.6 ms on 2 BLAS
    threads vs 1.0-1.2 ms on one. The setting is thread-local and restored after the call."""
    if not single_thread or _blas_local is None:
        out: Sims = mat @ q
        return out
    prev = _blas_local(1)
    try:
        out = mat @ q
    finally:
        _blas_local(prev)
    return out


class _Snapshot(NamedTuple):
    mat: Vec  # (capacity, dim); rows [0, n) are live or tombstones
    ids: Ids  # (capacity,); -1 marks a tombstone
    n: int
    tombstones: int


class BruteForceIndex:
    """Exact search over a preallocated, doubling float32 matrix; optional early exit above a bar."""

    def __init__(
        self,
        dim: int,
        *,
        early_exit_cosine: float | None = None,
        block_rows: int = 8192,
        initial_capacity: int = 16,
        single_thread_blas: bool = True,
    ) -> None:
        if dim <= 0:
            raise ConfigError(f"dim must be positive, got {dim}")
        if early_exit_cosine is not None and not -1.0 <= early_exit_cosine <= 1.0:
            raise ConfigError(f"early_exit_cosine must be a cosine in [-1, 1], got {early_exit_cosine}")
        if block_rows <= 0:
            raise ConfigError("block_rows must be positive")
        self._dim = dim
        self.early_exit_cosine = early_exit_cosine
        self.block_rows = block_rows
        self.single_thread_blas = single_thread_blas
        cap = max(1, initial_capacity)
        self._snap = _Snapshot(np.zeros((cap, dim), np.float32), np.full(cap, -1, np.int64), 0, 0)
        self._rows: dict[int, int] = {}  # id -> row
        self._wlock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, id: object) -> bool:
        return id in self._rows

    @property
    def capacity(self) -> int:
        return int(self._snap.mat.shape[0])

    def add(self, ids: int | Sequence[int] | Ids, vectors: npt.ArrayLike) -> None:
        id_arr, vecs = as_batch(ids, vectors, self._dim)
        with self._wlock:
            for i in id_arr.tolist():
                if i in self._rows:
                    self._remove_locked(i)
            s = self._snap
            need = s.n + len(id_arr)
            if need > s.mat.shape[0]:
                cap = s.mat.shape[0]
                while cap < need:
                    cap *= 2
                mat = np.zeros((cap, self._dim), np.float32)
                mat[: s.n] = s.mat[: s.n]
                idc = np.full(cap, -1, np.int64)
                idc[: s.n] = s.ids[: s.n]
                s = _Snapshot(mat, idc, s.n, s.tombstones)
            # Rows past the published n are invisible to readers until the new snapshot is published below.
            s.mat[s.n : need] = vecs
            s.ids[s.n : need] = id_arr
            for j, i in enumerate(id_arr.tolist()):
                self._rows[i] = s.n + j
            self._snap = _Snapshot(s.mat, s.ids, need, s.tombstones)

    def remove(self, id: int) -> bool:
        with self._wlock:
            if id not in self._rows:
                return False
            self._remove_locked(id)
            s = self._snap
            if s.tombstones > 64 and s.tombstones * 2 > s.n:
                self._compact_locked()
            return True

    def _remove_locked(self, id: int) -> None:
        row = self._rows.pop(id)
        s = self._snap
        s.ids[row] = -1  # first the id, so a reader that already has the row's similarity drops it
        s.mat[row] = 0.0
        self._snap = _Snapshot(s.mat, s.ids, s.n, s.tombstones + 1)

    def _compact_locked(self) -> None:
        s = self._snap
        live = np.flatnonzero(s.ids[: s.n] >= 0)
        cap = max(16, 1 << int(2 * len(live) - 1).bit_length()) if len(live) else 16
        mat = np.zeros((cap, self._dim), np.float32)
        mat[: len(live)] = s.mat[live]
        idc = np.full(cap, -1, np.int64)
        idc[: len(live)] = s.ids[live]
        self._rows = {int(i): r for r, i in enumerate(idc[: len(live)].tolist())}
        self._snap = _Snapshot(mat, idc, len(live), 0)

    def vector(self, id: int) -> Vec | None:
        """A copy of `id`'s vector, or None when absent."""
        row = self._rows.get(id)
        return None if row is None else self._snap.mat[row].copy()

    def vectors(self) -> tuple[Ids, Vec]:
        """Copies of the live ids and their vectors (for moving to another index)."""
        s = self._snap
        live = np.flatnonzero(s.ids[: s.n] >= 0)
        return s.ids[live].copy(), s.mat[live].copy()

    def search(self, vector: npt.ArrayLike, k: int = 1) -> tuple[Ids, Sims]:
        q = as_query(vector, self._dim)
        s = self._snap
        if s.n == 0 or k <= 0:
            return EMPTY
        bar = self.early_exit_cosine
        if bar is None or s.n <= self.block_rows:
            return self._select(
                _matvec(s.mat[: s.n], q, self.single_thread_blas), s.ids[: s.n], k, s.tombstones
            )
        best_ids: list[Ids] = []
        best_sims: list[Sims] = []
        for start in range(0, s.n, self.block_rows):
            stop = min(start + self.block_rows, s.n)
            sims_b = _matvec(s.mat[start:stop], q, self.single_thread_blas)
            ids, sims = self._select(sims_b, s.ids[start:stop], k, s.tombstones)
            best_ids.append(ids)
            best_sims.append(sims)
            if len(sims) == k and sims[-1] >= bar:
                break
        all_sims = np.concatenate(best_sims)
        order = top_k(all_sims, min(k, len(all_sims)))
        return np.concatenate(best_ids)[order], all_sims[order]

    @staticmethod
    def _select(sims: Sims, ids: Ids, k: int, tombstones: int) -> tuple[Ids, Sims]:
        if tombstones:
            sims = np.where(ids >= 0, sims, np.float32(-np.inf))
        order = top_k(sims, min(k, len(sims)))
        picked_ids, picked = ids[order], sims[order]
        if tombstones or (picked_ids < 0).any():
            keep = picked_ids >= 0  # a row removed while this search ran
            picked_ids, picked = picked_ids[keep], picked[keep]
        return picked_ids.copy(), picked.astype(np.float32, copy=False)


class AutoIndex:
    """Brute force while small, HNSW from `ann_threshold` entries on.

    The move happens in a background thread (building the graph for 10k entries takes a second): searches and
    mutations keep going to the brute-force index meanwhile, ids touched during the build are reconciled
    with the new graph under the lock, and then it replaces the brute-force index. `wait_ready()` waits.
    """

    def __init__(
        self,
        dim: int,
        *,
        ann_threshold: int | None = ANN_THRESHOLD,
        early_exit_cosine: float | None = None,
        ann_options: dict[str, Any] | None = None,
    ) -> None:
        self._dim = dim
        self.ann_threshold = ann_threshold
        self._ann_options = ann_options or {}
        self._impl: BruteForceIndex | AnnIndex = BruteForceIndex(dim, early_exit_cosine=early_exit_cosine)
        self._moving: threading.Thread | None = None
        self._touched: set[int] = set()  # ids added or removed while the graph is built
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._impl.dim

    @property
    def kind(self) -> str:
        return "ann" if isinstance(self._impl, AnnIndex) else "brute"

    def __len__(self) -> int:
        return len(self._impl)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for a running move to HNSW; True when none is running (any more)."""
        t = self._moving
        if t is not None:
            t.join(timeout)
        return self._moving is None

    def add(self, ids: int | Sequence[int] | Ids, vectors: npt.ArrayLike) -> None:
        with self._lock:
            self._impl.add(ids, vectors)
            impl = self._impl
            if self._moving is not None:
                self._touched.update(np.atleast_1d(np.asarray(ids, dtype=np.int64)).tolist())
            elif (
                isinstance(impl, BruteForceIndex)
                and self.ann_threshold is not None
                and len(impl) >= self.ann_threshold
            ):
                self._moving = threading.Thread(target=self._move, args=(impl,), name="ann-move", daemon=True)
                self._moving.start()

    def _move(self, brute: BruteForceIndex) -> None:
        try:
            with self._lock:
                live_ids, vecs = brute.vectors()
            ann = AnnIndex(self._dim, **self._ann_options)
            ann.add(live_ids, vecs)
            with self._lock:
                for i in self._touched:
                    vec = brute.vector(i)
                    if vec is None:
                        ann.remove(i)
                    else:
                        ann.add(i, vec)
                self._impl = ann  # readers holding the brute-force index finish on it
        except Exception:  # pragma: no cover - keep serving exactly
            logging.getLogger("workbench.cache").exception("moving to the ANN index failed; staying exact")
        finally:
            self._touched = set()
            self._moving = None

    def remove(self, id: int) -> bool:
        with self._lock:
            if self._moving is not None:
                self._touched.add(id)
            return self._impl.remove(id)

    def search(self, vector: npt.ArrayLike, k: int = 1) -> tuple[Ids, Sims]:
        return self._impl.search(vector, k)


def brute_force_truth(matrix: Vec, queries: Vec, k: int = 1) -> Ids:
    """Exact top-k row numbers for each query (for recall measurements)."""
    sims = queries @ matrix.T
    top = np.argmax(sims, axis=1)[:, None] if k == 1 else np.argsort(-sims, axis=1)[:, :k]
    out: Ids = top.astype(np.int64)
    return out


def recall_at_k(found: Iterable[Sequence[int]], truth: Ids) -> float:
    """Share of queries whose exact nearest neighbour is among the found ids."""
    rows = list(found)
    if not rows:
        return float("nan")
    return float(np.mean([int(truth[i, 0]) in set(r) for i, r in enumerate(rows)]))
