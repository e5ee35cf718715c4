"""The Ray executor on a local Ray cluster started here: a 64-stream bench on 2 Ray-actor workers gives the
same request count as the in-process run, and a TTFT median within 20% of it (both runs in this test)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from _system import require_extra

from workbench.experiments.runner import acompare
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations
from workbench.simulator import Profile
from workbench.simulator.process import ProcessSimulator

pytestmark = [pytest.mark.extras, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    require_extra("ray", "ray")
    ray = importlib.import_module("ray")
    # a local cluster of its own (not whatever RAY_ADDRESS names), 2 CPUs like this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sim() -> Iterator[ProcessSimulator]:
    # 400 ms TTFT, 400 ms per token (jittered, so the streams do not move in lockstep): 64 streams are
    # ~160 chunks/s, well within one client's reach, so the in-process run is a fair reference for the Ray
    # run. (At 100 ms per token the in-process httpx client was client-limited here: TTFT 4x the server's.)
    profile = Profile.instant(ttft_ms=400.0, token_delay_ms=400.0, jitter=0.5, seed=7)
    with ProcessSimulator(profile, processes=2) as s:
        yield s


async def test_ray_workers_match_the_in_process_run(ray_cluster: Any, sim: ProcessSimulator) -> None:
    wl = Workload.synthetic(128, output_tokens=4, model=sim.profile.models[0])
    variants = {"all": Optimizations.all()}
    common: dict[str, Any] = {"backend": sim.backend("openai"), "arrival": "concurrency=64", "progress": False}
    local = await acompare(wl, variants, **common)
    # the reference must describe the server, not the client, or the comparison below means nothing
    assert not any("client-limited" in w for w in local.warnings), local.warnings
    on_ray = await acompare(wl, variants, workers=2, executor="ray", **common)
    assert ray_cluster.is_initialized()  # the executor joined the test's cluster and left it running
    lm, rm = local.measured, on_ray.measured
    assert rm.height == lm.height == 128
    assert rm.get_column("request_id").n_unique() == 128
    assert (rm.get_column("status") == "ok").all()
    assert set(rm.get_column("worker").to_list()) == {0, 1}
    assert on_ray.config["executor"] == "ray" and on_ray.config["workers"] == 2
    local_ttft, ray_ttft = lm.get_column("ttft_ms").median(), rm.get_column("ttft_ms").median()
    assert isinstance(local_ttft, float) and isinstance(ray_ttft, float)
    assert abs(ray_ttft - local_ttft) <= 0.2 * local_ttft, (local_ttft, ray_ttft)
