"""The one place where an `Optimizations` value becomes parts.

`build(opts)` says, for every toggle, what it changes: the transport (pooled keep-alive client, HTTP/2),
the engine (fast parser, early cancel), the response cache tiers (exact / semantic / disk), and the view
(coalesced updates, incremental rendering). `Client`, `AsyncClient`, the experiments runner, the CLI and
the Dashboard all go through it, so they agree on what each toggle means:
``Client(url, optimizations=Optimizations(exact_cache=True))`` answers a repeat from its cache.

`prewarm`, `concurrency` and `router_fast_path` act in the experiments runner, not in a single client;
`Parts.runner` carries them there (`workbench.experiments.runner.acompare`: a warm-up before a variant's
first request, its bounded worker pool, `router.apply(request, fast_path=...)` when given a `router=`). The
runner passes `disk_dir` when the user names a `cache_dir=` (`workbench bench --cache-dir`), so the disk
tier outlives the process; otherwise it is temporary, as below.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from workbench.cache import ResponseCache
from workbench.optimizations import Optimizations

__all__ = ["Parts", "RunnerParts", "TransportParts", "ViewParts", "build"]


@dataclass(frozen=True, slots=True)
class TransportParts:
    pooled: bool  # one long-lived keep-alive HTTP client, or a new one per request
    http2: bool
    fast_parse: bool
    early_cancel: bool


@dataclass(frozen=True, slots=True)
class ViewParts:
    coalesce: bool  # the widget flushes at most every ~16-33 ms instead of once per chunk
    incremental: bool  # the widget sends only the new text


@dataclass(frozen=True, slots=True)
class RunnerParts:
    prewarm: bool
    concurrency: int
    router_fast_path: bool


@dataclass(slots=True)
class Parts:
    transport: TransportParts
    view: ViewParts
    runner: RunnerParts
    cache: ResponseCache | None
    disk_dir: str | None  # where the disk tier lives (None: no disk tier)


def build(
    opts: Optimizations,
    *,
    cache: ResponseCache | None = None,
    disk_dir: str | Path | None = None,
) -> Parts:
    """The parts `opts` asks for. `cache`: use this cache instead of building one (shared by clients);
    `disk_dir`: where the disk tier's SQLite file goes (default: a fresh temporary folder, removed with the
    cache, so each variant starts cold and none answers from another one's entries)."""
    transport = TransportParts(
        pooled=opts.connection_pool,
        http2=opts.http2,
        fast_parse=opts.fast_parse,
        early_cancel=opts.early_cancel,
    )
    view = ViewParts(coalesce=opts.coalesce_ui, incremental=opts.incremental_render)
    runner = RunnerParts(
        prewarm=opts.prewarm, concurrency=opts.concurrency, router_fast_path=opts.router_fast_path
    )
    folder: str | None = None
    if cache is None:
        temporary = opts.disk_cache and disk_dir is None
        if opts.disk_cache:
            folder = tempfile.mkdtemp(prefix="workbench-disk-") if disk_dir is None else str(disk_dir)
            Path(folder).mkdir(parents=True, exist_ok=True)
        disk_path = str(Path(folder) / "cache.sqlite") if folder is not None else None
        cache = ResponseCache.from_optimizations(opts, disk_path=disk_path)
        if temporary and cache is not None and folder is not None:
            weakref.finalize(cache, shutil.rmtree, folder, True)
    return Parts(transport=transport, view=view, runner=runner, cache=cache, disk_dir=folder)
