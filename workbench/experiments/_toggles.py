"""Runner-side toggles: `prewarm`, `concurrency` (the bounded worker pool) and the folders of `disk_cache`.

Each of these acts on a whole run, not on one client, so the runner applies them (`workbench.variant` says
so in `Parts.runner`); `router_fast_path` acts through the `router=` the runner is given
(`workbench.router.Router.apply`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench import variant
from workbench._exceptions import ConfigError, WorkbenchError
from workbench._types import Backend, Request, StreamResult, Timeouts
from workbench.experiments.clients import make_client
from workbench.optimizations import Optimizations
from workbench.view import view_columns

if TYPE_CHECKING:
    from workbench.router import Router

__all__ = ["arm_run", "batches", "disk_folder", "make_clients", "prewarm", "run_pool", "warmup_request"]

# How long Ollama keeps the model loaded after the warm-up (its own default is 5 minutes too; saying it
# explicitly keeps a server configured with a short OLLAMA_KEEP_ALIVE from unloading it mid-run).
KEEP_ALIVE = "5m"


def warmup_request(model: str, protocol: str) -> Request:
    """The request that loads `model` before anything is timed.

    Ollama: a generate with an empty prompt and `keep_alive`, which loads the model and returns at once (the
    documented way to preload). OpenAI-compatible servers have no load-only call: one chat token does it.
    """
    tags = {"warmup": True, "prewarm": True}
    if protocol == "ollama":
        # num_predict=1: a server that treats the empty prompt as a generation (the simulator) stops at once
        return Request.completion(model, "", max_tokens=1, options={"keep_alive": KEEP_ALIVE}, tags=tags)
    return Request.chat(model, "Reply with one word.", max_tokens=1, temperature=0.0, tags=tags)


async def prewarm(client: Any, model: str, backend: Backend) -> dict[str, Any]:
    """Send the warm-up request for `model` on `client` (the variant's own client, so its connection and
    protocol detection are warm too), untimed by the run; returns what happened, for `RunResult.meta`.

    Sent with `complete()` (not streamed): a response cache replays hits but stores no miss from it, so a
    warm-up never primes a cache, in this run or (with a persistent `cache_dir`) in a later one.
    """
    protocol = backend.protocol
    detect = getattr(client, "detect_protocol", None)
    if protocol == "auto" and detect is not None:
        try:
            protocol = await detect()
        except WorkbenchError:
            protocol = "openai"
    request = warmup_request(model, "ollama" if protocol == "ollama" else "openai")
    t0 = time.perf_counter_ns()
    try:
        result = await client.complete(request)
        status, error = result.status, result.error
        ttft = result.metrics.ttft_ms
        cache = result.cache
    except WorkbenchError as exc:  # a failed warm-up is reported; the timed requests still run
        status, error, ttft, cache = "error", str(exc), None, None
    return {
        "model": model,
        "protocol": protocol,
        "status": status,
        "error": error,
        "ttft_ms": ttft,
        "e2e_ms": (time.perf_counter_ns() - t0) / 1e6,
        "cache": cache,
    }


def batches(
    variants: Sequence[str], concurrency: Mapping[str, int], *, block: int, interleave: bool
) -> list[list[int]]:
    """The sequential arrival's batches: indices into the plan, each batch one variant's next requests.

    Per variant, its slots (in plan order) are cut into batches of `concurrency * block` (the whole variant
    when not interleaved); batches run one after another, ordered by the plan position of their first slot,
    so variants stay interleaved and never overlap. Concurrency 1 gives one slot per batch: the plain
    sequential run.
    """
    per: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        per.setdefault(v, []).append(i)
    out: list[list[int]] = []
    for v, idx in per.items():
        size = len(idx) if not interleave else max(concurrency.get(v, 1), 1) * max(block, 1)
        if concurrency.get(v, 1) <= 1:
            size = 1
        out.extend(idx[k : k + size] for k in range(0, len(idx), size))
    out.sort(key=lambda b: b[0])
    return out


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def disk_folder(cache_dir: str | Path, variant: str) -> Path:
    """The variant's own folder under the user's `cache_dir` (one per variant: no variant answers from
    another one's entries, and a later run of the same variant name answers from this one's)."""
    name = _UNSAFE.sub("_", variant).strip("._") or "variant"
    return Path(cache_dir).expanduser() / name


def make_clients(
    be: Backend,
    named: Mapping[str, Optimizations],
    to: Timeouts,
    client_factory: Callable[..., Any] | None,
    router: Router | None,
    cache_dir: str | Path | None,
) -> tuple[dict[str, Any], dict[tuple[str, str], Any], dict[str, dict[str, Any]]]:
    """Per variant: its client, its clients for router tiers on other servers, and where its disk tier is."""
    factory: Callable[..., Any] = make_client if client_factory is None else client_factory
    clients: dict[str, Any] = {}
    disk: dict[str, dict[str, Any]] = {}
    for name, opt in named.items():
        if opt.disk_cache and cache_dir is not None:
            if client_factory is not None:
                raise ConfigError(
                    "cache_dir= needs the runner's own clients",
                    hint="drop client_factory=, or build the disk cache in your factory "
                    "(workbench.variant.build(opts, disk_dir=...))",
                )
            folder = disk_folder(cache_dir, name)
            parts = variant.build(opt, disk_dir=folder)
            clients[name] = make_client(be, opt, to, cache=parts.cache)
            disk[name] = {"dir": str(folder), "persistent": True}
        else:
            clients[name] = factory(be, opt, to)
            if opt.disk_cache:
                folder_now = getattr(getattr(clients[name], "parts", None), "disk_dir", None)
                disk[name] = {"dir": folder_now, "persistent": False}
    tiers: dict[tuple[str, str], Any] = {}
    if router is not None:
        for tier, target in router.tiers.items():
            if target.url.rstrip("/") == be.url.rstrip("/"):
                continue  # same server: the variant's own client (its pool and cache) serves this tier
            tb = target.backend(verify=be.verify)
            for name, opt in named.items():
                tiers[(name, tier)] = factory(tb, opt, to)
    return clients, tiers, disk


def arm_run(
    run: Any,
    named: Mapping[str, Optimizations],
    tier_clients: Mapping[tuple[str, str], Any],
    router: Router | None,
    model: str,
    *,
    block: int,
    interleave: bool,
) -> None:
    """Give the run the runner-side toggles: options per variant, router, tier clients, warm-up targets."""
    run.opts = dict(named)
    run.router = router
    run.tier_clients = dict(tier_clients)
    run.block, run.interleave = block, interleave
    for name in named:
        targets: list[tuple[Any, str]] = [(run.clients[name], model)]
        if router is not None:
            targets = []
            for tier, target in router.tiers.items():
                pair = (tier_clients.get((name, tier), run.clients[name]), target.model)
                if all(pair[0] is not c or pair[1] != m for c, m in targets):
                    targets.append(pair)
        run.warm_targets[name] = targets


async def run_pool(run: Any, batch: Sequence[tuple[Any, Request]], n: int) -> None:
    """`concurrency`: one batch of a variant through a bounded pool of `n` workers. The whole batch is
    submitted at once (its scheduled and ready time); each worker takes the next request when it is free, so
    up to `n` are in flight and the wait for a free worker is the request's `client_queue_ms`. Results are
    put back in submission order when the frame is built."""
    start = time.perf_counter_ns()
    it = iter(batch)

    async def worker() -> None:
        for slot, req in it:  # a shared iterator: the bounded pool
            if run.stopping:
                return
            await run.one(slot, req, start, None, ready_ns=start)

    await asyncio.gather(*(worker() for _ in range(min(n, len(batch)))))


def view_frame(results: Sequence[StreamResult]) -> pl.DataFrame:
    """What each request would cost the notebook view under its own variant's `coalesce_ui` /
    `incremental_render` (messages and bytes to the front end, kernel CPU), measured headless by replaying
    its chunks through the widget's view model (`workbench.view`): the view toggles act in every bench."""
    rows = [
        {
            "request_id": r.request.id,
            **view_columns(
                r,
                coalesce=bool(r.optimizations.get("coalesce_ui")),
                incremental=bool(r.optimizations.get("incremental_render")),
            ),
        }
        for r in results
    ]
    counts = {"ui_messages": pl.Int64(), "ui_bytes": pl.Int64(), "ui_cpu_ms": pl.Float64()}
    return pl.DataFrame(rows, schema={"request_id": pl.String(), **counts})
