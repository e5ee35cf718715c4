"""Simulator zero-delay throughput: chunks/s of one 200k-chunk stream read raw with httpx (iter_raw).

    .venv/bin/python benchmarks/simulator_rate.py [--chunks 200000] [--repeats 3]

For each protocol (Ollama NDJSON, OpenAI SSE) and transport (plain HTTP/1.1, HTTPS + HTTP/2) it prints the
best-of-N chunks/s from the first body byte to the last ("stream") and from the request send ("e2e",
which adds the server's up-front text generation), the ratio to the 200k/s target, and, for plain HTTP,
the ratio to the same app served by uvicorn in the same run (the baseline the server choice was made
against; see workbench/simulator/server.py). The server counts the chunks (ground truth), so the client
only reads bytes. Batched chunks share one emit stamp; this measures the wire rate, not stamp precision.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from workbench.simulator import Profile, SimApp, Simulator
from workbench.simulator.groundtruth import Ledger

TARGET = 200_000


def _body(protocol: str, n: int) -> tuple[str, dict[str, object]]:
    msgs = [{"role": "user", "content": "measure the simulator"}]
    if protocol == "ollama":
        return "/api/chat", {"model": "sim-small", "messages": msgs, "options": {"num_predict": n}}
    return "/v1/chat/completions", {"model": "sim-small", "messages": msgs, "max_tokens": n, "stream": True}


def measure(
    url: str, client: httpx.Client, protocol: str, n: int, count: Callable[[str], int]
) -> tuple[float, float, int, int]:
    path, body = _body(protocol, n)
    rid = f"bench-{time.perf_counter_ns()}"
    t_send = time.perf_counter_ns()
    t_first = 0
    size = 0
    with client.stream("POST", url + path, json=body, headers={"X-Request-Id": rid}) as r:
        r.raise_for_status()
        for raw in r.iter_raw(1 << 16):
            if not t_first:
                t_first = time.perf_counter_ns()
            size += len(raw)
    t_end = time.perf_counter_ns()
    chunks = count(rid)
    return chunks / ((t_end - t_first) / 1e9), chunks / ((t_end - t_send) / 1e9), size, chunks


@contextmanager
def uvicorn_server(ledger: Ledger) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(SimApp(Profile.instant(), ledger), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows: dict[tuple[str, str], tuple[float, float, int, int]] = {}

    def run(label: str, url: str, client: httpx.Client, count: Callable[[str], int]) -> None:
        for protocol in ("ollama", "openai"):
            rows[(protocol, label)] = max(
                measure(url, client, protocol, args.chunks, count) for _ in range(args.repeats)
            )

    ledger = Ledger(100)
    with uvicorn_server(ledger) as url, httpx.Client(timeout=60) as client:
        run("uvicorn http/1.1 (baseline)", url, client, lambda rid: ledger.get(rid).chunks_sent)  # type: ignore[union-attr]
    for label, tls in (("hypercorn http/1.1", False), ("hypercorn https+h2", True)):
        with Simulator(Profile.instant(), tls=tls, http2=tls) as sim:
            verify = sim.ssl_context() if tls else True
            with httpx.Client(http2=tls, verify=verify, timeout=60) as client:
                run(label, sim.url, client, lambda rid, s=sim: s.ground_truth(rid).chunks_sent)  # type: ignore[misc]

    print(f"{args.chunks} content chunks per stream, best of {args.repeats}")
    print(
        f"{'protocol':8} {'server':28} {'MB':>6} {'chunks/s stream':>16} {'chunks/s e2e':>13} {'vs 200k/s':>9} {'vs uvicorn':>10}"
    )
    for (protocol, label), (rate, e2e, size, _chunks) in rows.items():
        base = rows[(protocol, "uvicorn http/1.1 (baseline)")][0]
        vs = f"{rate / base:9.2f}x" if "http/1.1" in label else "        -"
        print(
            f"{protocol:8} {label:28} {size / 1e6:6.1f} {rate:16,.0f} {e2e:13,.0f} {rate / TARGET:8.1f}x {vs}"
        )


if __name__ == "__main__":
    main()
