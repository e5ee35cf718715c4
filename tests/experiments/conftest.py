from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from workbench.simulator import Profile, Simulator

_SERVER = """
import sys
from workbench.simulator import Profile, Simulator
with Simulator(Profile.instant(ttft_ms=2.0, token_delay_ms=1.0, seed=3)) as sim:
    print(sim.url, flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def fast_sim() -> Iterator[Simulator]:
    """Short TTFT, 1 ms per token: requests take a few ms, so rates and queues are about the client."""
    with Simulator(Profile.instant(ttft_ms=2.0, token_delay_ms=1.0, seed=3)) as sim:
        yield sim


@pytest.fixture(scope="module")
def sim_process_url() -> Iterator[str]:
    """The same fast simulator in its own process: an open-loop rate test should measure the client alone,
    not the client and the server sharing one interpreter lock."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            pytest.fail(f"simulator process did not start: {url!r}")
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
