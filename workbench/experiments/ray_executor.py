"""`executor="ray"` (`workbench bench --workers N --executor ray`): the same workers as Ray actors.

Ray is an optional extra (`pip install -e '.[ray]'`); it is imported by name so this module type-checks
with and without it. An existing cluster is joined when `RAY_ADDRESS` is set (or `ray.init()` was called
already); otherwise a local one is started for the run. Each actor runs `workers.run_spec` for its share;
a small async gate actor releases them together.

The gate hands out a wall-clock instant (time.time_ns), because actors on other machines do not share
this machine's monotonic clock; each actor turns it into its own perf_counter_ns instant, and the merge
aligns the workers' stamps on those instants (see workers.py); across machines as well as NTP keeps time.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import Sequence
from typing import Any

from workbench._exceptions import ConfigError
from workbench.experiments.workers import START_LEAD_NS, WorkerSpec, run_spec

__all__ = ["run_ray"]


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ConfigError(
            "the Ray executor needs the optional extra [ray]",
            hint="pip install -e '.[ray]' (or use --executor process)",
        ) from exc


class _Gate:
    """Releases `n` waiting workers at one wall-clock instant (an async Ray actor: `arrive` calls overlap)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.release_wall_ns = 0
        self.event = asyncio.Event()

    async def arrive(self) -> int:
        self.count += 1
        if self.count >= self.n:
            self.release_wall_ns = time.time_ns() + START_LEAD_NS
            self.event.set()
        await self.event.wait()
        return self.release_wall_ns


class _Worker:
    """One worker share, run inside a Ray actor process."""

    def run(self, spec: WorkerSpec, gate: Any) -> dict[str, Any]:
        ray = _ray()

        async def wait_gate() -> int:
            wall: int = await asyncio.to_thread(ray.get, gate.arrive.remote())
            # the shared wall instant on this process's monotonic clock
            return time.perf_counter_ns() + (wall - time.time_ns())

        return run_spec(spec, wait_gate)


def run_ray(specs: Sequence[WorkerSpec]) -> list[dict[str, Any]]:
    """Run every spec on its own Ray actor; the parts come back in spec order."""
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address or None, include_dashboard=False, log_to_driver=True)
        started_here = address is None
    try:
        gate = ray.remote(_Gate).remote(len(specs))
        # num_cpus=0: a worker mostly waits on sockets; asking a CPU each would refuse N > cluster CPUs.
        actor_cls = ray.remote(num_cpus=0)(_Worker)
        actors = [actor_cls.remote() for _ in specs]
        parts: list[dict[str, Any]] = ray.get(
            [a.run.remote(s, gate) for a, s in zip(actors, specs, strict=True)]
        )
        for a in [*actors, gate]:
            ray.kill(a)
        return parts
    finally:
        if started_here:
            ray.shutdown()
