"""One client per variant, honouring that variant's Optimizations (transport toggles and caches).

Each variant gets its own cache, starting empty (a disk tier in a fresh temporary directory), so a run
measures what the toggles buy from a cold start and no variant answers from another one's entries.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

from workbench._types import Backend, Timeouts
from workbench.cache import ResponseCache
from workbench.client import AsyncClient
from workbench.optimizations import Optimizations

__all__ = ["CacheNotWiredWarning", "make_cache", "make_client"]


class CacheNotWiredWarning(UserWarning):
    """A cache toggle is on but this client build takes no `cache=`: the variant runs without a cache."""


def make_cache(optimizations: Optimizations, *, disk_dir: str | None = None) -> ResponseCache | None:
    """The response cache the cache toggles ask for, or None when every cache toggle is off.

    The disk tier (a SQLite file) goes in `disk_dir`, a fresh temporary directory unless given.
    """
    if optimizations.disk_cache and disk_dir is None:
        disk_dir = tempfile.mkdtemp(prefix="workbench-bench-disk-")
    disk_path = str(Path(disk_dir) / "cache.sqlite") if disk_dir is not None else None
    return ResponseCache.from_optimizations(optimizations, disk_path=disk_path)


def _takes_cache() -> bool:
    return "cache" in inspect.signature(AsyncClient.__init__).parameters


def make_client(backend: Backend, optimizations: Optimizations, timeouts: Timeouts) -> AsyncClient:
    """A fresh `AsyncClient` for one variant, with its own (empty) cache when a cache toggle is on."""
    kwargs: dict[str, Any] = {"optimizations": optimizations, "timeouts": timeouts}
    disk_dir: str | None = None
    wants_cache = optimizations.exact_cache or optimizations.semantic_cache or optimizations.disk_cache
    if wants_cache and _takes_cache():
        disk_dir = tempfile.mkdtemp(prefix="workbench-bench-disk-") if optimizations.disk_cache else None
        kwargs["cache"] = make_cache(optimizations, disk_dir=disk_dir)
    elif wants_cache:
        warnings.warn(
            f"{optimizations.label()}: cache toggles are on but AsyncClient takes no cache; running uncached",
            CacheNotWiredWarning,
            stacklevel=2,
        )
    client = AsyncClient(backend, **kwargs)
    if disk_dir is not None:
        weakref.finalize(client, shutil.rmtree, disk_dir, True)
    return client
