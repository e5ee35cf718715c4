"""Embedded LLM server simulator: Ollama and OpenAI wire formats over real HTTP on loopback.

    from workbench.simulator import Profile, Simulator

    with Simulator(Profile(token_delay_ms=5), tls=True, http2=True) as sim:
        httpx.Client(verify=sim.ssl_context(), http2=True).post(sim.url + "/v1/chat/completions", json=...)
        sim.ground_truth(request_id).token_emit_ns

Endpoints (one port serves both protocols): Ollama `/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`,
`/api/version`, `/`; OpenAI `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

Knobs live in `Profile` (latency model, cold start, queueing, faults, trace replay). Any of them but `trace`
can be overridden for one request with the header `X-Sim-Override: {"token_delay_ms": 0}` (JSON) or
`X-Sim-Fault: disconnect_after=5,stall_s=0.2`; a bad override is a 400 in the protocol's error shape.
`Profile(trace=...)` replays a server recorded with `workbench record` (a `Trace` or the path of its .jsonl
file; see `workbench.simulator.trace`): each request gets a recorded request's timing and chunking.

Ground truth (`sim.ground_truth(request_id)`, keyed by the request's `X-Request-Id` header): one emit stamp
(`time.perf_counter_ns()`, taken right before the write) per chunk, where a chunk is one SSE event (role
chunk, content chunks, usage chunk, `[DONE]`), one NDJSON line, or the whole body of a non-streaming or error
response. `token_emit_ns` holds the stamps of the chunks that carried text. Chunks written in one batch
(zero-delay mode, or chunks already overdue when the server got to them) share that write's stamp. Fault
counters (`*_after`) count content chunks.

`ProcessSimulator` has the same interface and runs the server in a child process, so timing comparisons do
not share a GIL with the client under test.
"""

from workbench.simulator.app import SimApp
from workbench.simulator.groundtruth import GroundTruth, ServerStats
from workbench.simulator.latency import trace_from_stamps
from workbench.simulator.process import ProcessSimulator
from workbench.simulator.profile import Profile, ProfileError
from workbench.simulator.server import Simulator
from workbench.simulator.text import count_tokens, embed
from workbench.simulator.trace import SHIPPED_TRACE, Trace, TraceError, TraceRecord

__all__ = [
    "SHIPPED_TRACE",
    "GroundTruth",
    "ProcessSimulator",
    "Profile",
    "ProfileError",
    "ServerStats",
    "SimApp",
    "Simulator",
    "Trace",
    "TraceError",
    "TraceRecord",
    "count_tokens",
    "embed",
    "trace_from_stamps",
]
