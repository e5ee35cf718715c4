"""ProcessSimulator: the same server in a child process, ground truth over /_sim/*."""

from __future__ import annotations

import time

import httpx
import pytest
from simwire_helpers import chat_body, sse_json

from workbench.simulator import ProcessSimulator, Profile


def test_process_simulator_round_trip() -> None:
    profile = Profile(ttft_ms=5, token_delay_ms=3, jitter=0)
    with ProcessSimulator(profile, tls=True, http2=True) as sim:
        assert sim.running and sim.ca_path is not None
        with httpx.Client(http2=True, verify=sim.ssl_context(), base_url=sim.url) as c:
            arrivals = []
            body = chat_body(stream=True, max_tokens=6)
            with c.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-Id": "p1"}) as r:
                assert r.http_version == "HTTP/2"
                raw = b""
                for part in r.iter_raw():
                    arrivals.append(time.perf_counter_ns())
                    raw += part
            chunks, done = sse_json(raw)
            assert done and len(chunks) == 7
            gt = sim.ground_truth("p1")
            assert gt.chunks_sent == 8 and len(gt.token_emit_ns) == 6 and gt.finished
            # One monotonic clock across processes: emits precede arrivals and are close to them.
            assert gt.emit_ns[0] <= arrivals[0] and gt.emit_ns[-1] <= arrivals[-1]
            assert (arrivals[-1] - gt.emit_ns[-1]) / 1e6 < 1000
            with pytest.raises(KeyError):
                sim.ground_truth("nope", wait_s=0)
            st = sim.stats()
            assert st.requests == 1 and st.http_versions == {"2": 1}  # control queries are not counted

            with c.stream(
                "POST",
                "/api/chat",
                json=chat_body(options={"num_predict": 10_000}),
                headers={"X-Request-Id": "p2"},
            ) as r:
                next(r.iter_lines())
        assert sim.wait_disconnect("p2", 5.0)
    assert not sim.running
