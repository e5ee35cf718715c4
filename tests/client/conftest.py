"""Fixtures for client tests: real loopback simulators (plain HTTP, and TLS + HTTP/2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbench.simulator import Profile, Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # a few ms per token so cancel / timeout tests have a stream to act on; faults come per request
    with Simulator(Profile.instant(token_delay_ms=4.0, seed=1)) as s:
        yield s


@pytest.fixture(scope="module")
def tls_sim() -> Iterator[Simulator]:
    with Simulator(Profile.instant(token_delay_ms=1.0, seed=2), tls=True, http2=True) as s:
        yield s
