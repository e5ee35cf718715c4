"""Shared by the vector indices: array types and argument checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from workbench._exceptions import ConfigError

Ids = npt.NDArray[np.int64]
Sims = npt.NDArray[np.float32]
Vec = npt.NDArray[np.float32]


def as_batch(ids: int | Sequence[int] | Ids, vectors: npt.ArrayLike, dim: int) -> tuple[Ids, Vec]:
    id_arr = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim == 1:
        vecs = vecs[None, :]
    if vecs.ndim != 2 or vecs.shape[1] != dim:
        raise ConfigError(f"vectors of shape {vecs.shape} do not match the index dimension {dim}")
    if len(id_arr) != len(vecs):
        raise ConfigError(f"{len(id_arr)} ids for {len(vecs)} vectors")
    if (id_arr < 0).any():
        raise ConfigError("index ids must be >= 0")
    if len(np.unique(id_arr)) != len(id_arr):
        raise ConfigError("duplicate ids in one add() call")
    return id_arr, vecs


def as_query(vector: npt.ArrayLike, dim: int) -> Vec:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise ConfigError(f"query of dimension {q.shape[0]} for an index of dimension {dim}")
    return q


def top_k(sims: Sims, k: int) -> npt.NDArray[np.intp]:
    if k == 1:
        return np.array([int(np.argmax(sims))])
    if k >= len(sims):
        return np.argsort(-sims, kind="stable")
    part = np.argpartition(-sims, k - 1)[:k]
    return part[np.argsort(-sims[part], kind="stable")]


EMPTY: tuple[Ids, Sims] = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
