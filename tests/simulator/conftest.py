from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from workbench.simulator import Profile, Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(Profile.instant()) as s:
        yield s


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as c:
        yield c
