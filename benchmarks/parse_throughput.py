"""Parse throughput: how many stream chunks per second each client turns into text.

One command: `.venv/bin/python benchmarks/parse_throughput.py`. Each case reads one zero-delay simulator
stream of up to 200k chunks over plain HTTP/1.1; the simulator runs in a child process so its CPU does not
share this process's GIL with the client being measured. Cases are interleaved and repeated, the best run
of each is kept (the least disturbed by other load on the machine), and ratios are printed against the raw
byte read measured in the same run. Slow clients are time-boxed per run (chunks/s over what they read).

Targets (from the issue): fast >= 0.35 x raw, >= 4 x the ollama client, >= 20 x the openai client.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

CHUNKS = 200_000
PROMPT = "benchmark the parser"
MODEL = "sim-small"


def _serve(conn: Connection, chunks: int) -> None:
    from workbench.simulator import Profile, Simulator

    profile = Profile.instant(default_tokens_min=chunks, default_tokens_max=chunks)
    with Simulator(profile) as sim:
        conn.send(sim.url)
        conn.recv()  # any message (or EOF) stops the server


@dataclass
class Run:
    chunks: int
    seconds: float
    cpu_seconds: float = 0.0  # this process only: the simulator's CPU (child process) is not in it

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rate(self) -> float:
        return self.chunks / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


class _Clock:
    """Wall and CPU time from the same start: chunks per CPU-second is steadier on a busy machine."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.wall0

    def run(self, chunks: int) -> Run:
        return Run(chunks, time.perf_counter() - self.wall0, time.process_time() - self.cpu0)


Case = Callable[[str, int, float], Run]


def _ollama_body(n: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "options": {"num_predict": n}}


def _openai_body(n: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": n}


def raw_ollama(url: str, n: int, budget_s: float) -> Run:
    """The limit: bytes off the socket, NDJSON lines counted with bytes.count (no decoding)."""
    import httpx

    with httpx.Client(timeout=60) as c:
        clock = _Clock()
        lines = 0
        with c.stream("POST", url + "/api/chat", json=_ollama_body(n)) as r:
            r.raise_for_status()
            for block in r.iter_raw():
                lines += block.count(b"\n")
                if clock.elapsed() > budget_s:
                    break
        # The last line is `done: true`, not a content chunk.
        return clock.run(max(lines - 1, 0))


def raw_openai(url: str, n: int, budget_s: float) -> Run:
    import httpx

    with httpx.Client(timeout=60) as c:
        clock = _Clock()
        events = 0
        with c.stream("POST", url + "/v1/chat/completions", json=_openai_body(n)) as r:
            r.raise_for_status()
            for block in r.iter_raw():
                events += block.count(b"\n\n")
                if clock.elapsed() > budget_s:
                    break
        # Role chunk, finish chunk, usage chunk and [DONE] carry no text.
        return clock.run(max(events - 4, 0))


def _workbench(protocol: str, fast: bool) -> Case:
    def case(url: str, n: int, budget_s: float) -> Run:
        from workbench import Backend, Optimizations, Request, TextDelta
        from workbench.client import Client

        opts = Optimizations(fast_parse=fast, connection_pool=True)
        client = Client(Backend(url, protocol=protocol), optimizations=opts)  # type: ignore[arg-type]
        try:
            req = Request.chat(MODEL, PROMPT, max_tokens=n)
            count = 0
            clock = _Clock()
            with client.stream(req) as s:
                for ev in s:
                    if type(ev) is TextDelta:
                        count += 1
                        if count & 1023 == 0 and clock.elapsed() > budget_s:
                            s.cancel()
                            break
            return clock.run(count)
        finally:
            client.close()

    return case


def ollama_client(url: str, n: int, budget_s: float) -> Run:
    import ollama

    client = ollama.Client(host=url)
    count = 0
    clock = _Clock()
    stream = client.chat(model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True,
                         options={"num_predict": n})
    for part in stream:
        if part.message.content:
            count += 1
            if count & 1023 == 0 and clock.elapsed() > budget_s:
                break
    run = clock.run(count)
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    return run


def openai_client(url: str, n: int, budget_s: float) -> Run:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    try:
        count = 0
        clock = _Clock()
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                                stream=True, max_tokens=n)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
                if count & 1023 == 0 and clock.elapsed() > budget_s:
                    break
        run = clock.run(count)
        stream.close()
        return run
    finally:
        client.close()


CASES: dict[str, Case] = {
    "raw bytes (httpx iter_raw, ndjson)": raw_ollama,
    "raw bytes (httpx iter_raw, sse)": raw_openai,
    "workbench fast_parse (ollama)": _workbench("ollama", True),
    "workbench fast_parse (openai)": _workbench("openai", True),
    "workbench baseline parse (ollama)": _workbench("ollama", False),
    "workbench baseline parse (openai)": _workbench("openai", False),
    "official ollama client": ollama_client,
    "official openai client": openai_client,
}
KEYS = {
    "raw": "raw bytes (httpx iter_raw, ndjson)",
    "raw_sse": "raw bytes (httpx iter_raw, sse)",
    "fast": "workbench fast_parse (ollama)",
    "fast_sse": "workbench fast_parse (openai)",
    "base": "workbench baseline parse (ollama)",
    "base_sse": "workbench baseline parse (openai)",
    "ollama": "official ollama client",
    "openai": "official openai client",
}
# (label, numerator, denominator, target); the targets are for the fast path, on wall chunks/s.
# The raw read's CPU figure says nothing about a limit (its pace is the server's), so raw ratios are wall only.
RATIOS: list[tuple[str, str, str, float | None]] = [
    ("fast / raw (ndjson)", "fast", "raw", 0.35),
    ("fast / raw (sse)", "fast_sse", "raw_sse", None),
    ("fast / ollama client", "fast", "ollama", 4.0),
    ("fast / openai client", "fast_sse", "openai", 20.0),
    ("fast / baseline (ndjson)", "fast", "base", None),
    ("fast / baseline (sse)", "fast_sse", "base_sse", None),
]


def _capture(url: str, protocol: str, n: int) -> list[bytes]:
    """One whole stream's bytes, cut into reads of 64 KiB (httpcore's read size), for the in-memory rows."""
    import httpx

    path, body = ("/api/chat", _ollama_body(n)) if protocol == "ollama" else ("/v1/chat/completions",
                                                                             _openai_body(n))
    with httpx.Client(timeout=60) as c:
        data = c.post(url + path, json=body).content
    return [data[i:i + 65536] for i in range(0, len(data), 65536)]


def _in_memory(blocks: list[bytes], protocol: str, record: bool) -> Run:
    """The fast parser alone (or with the Recorder the client feeds), no sockets: where the time goes."""
    from workbench import Request
    from workbench.metrics import Recorder
    from workbench.protocols import make_parser

    parser = make_parser(protocol, fast=True)  # type: ignore[arg-type]
    rec = Recorder(Request.chat(MODEL, PROMPT), backend="mem", protocol=protocol)  # type: ignore[arg-type]
    count = 0
    clock = _Clock()
    rec.sent()
    for block in blocks:
        t = time.perf_counter_ns()
        rec.received(len(block), t)
        events = parser.feed(block, t)
        if record:
            rec.events(events)  # as the stream engine does, one read at a time
        count += len(events)
    if record:
        rec.finish()
    return clock.run(count)


def _profile(url: str, n: int, case: str, out: str) -> None:
    """Where the fast path spends its time: cProfile of one run, top functions by own time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    run = CASES[KEYS[case]](url, n, 30.0)
    prof.disable()
    print(f"{case}: {run.rate:,.0f} chunks/s under cProfile ({run.chunks} chunks)")
    prof.dump_stats(out)
    pstats.Stats(prof).sort_stats("tottime").print_stats(18)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--chunks", type=int, default=CHUNKS, help="chunks per stream (default 200000)")
    p.add_argument("--repeats", type=int, default=5, help="runs per case, best kept (default 5)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds at most per run (default 3)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--profile", choices=sorted(KEYS), help="cProfile one case instead of benchmarking")
    args = p.parse_args(argv)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, args.chunks), daemon=True)
    server.start()
    try:
        if not parent.poll(60):
            print("parse_throughput: the simulator did not start within 60 s", file=sys.stderr)
            return 1
        url: str = parent.recv()
        if args.profile:
            _profile(url, args.chunks, args.profile, f"/tmp/parse_{args.profile}.prof")
            return 0
        print(f"simulator (child process) at {url}; {args.chunks:,} chunks per stream, "
              f"best of {args.repeats}, <= {args.budget:.0f} s per run\n")
        best: dict[str, Run] = {}
        best_cpu: dict[str, Run] = {}

        def keep(name: str, run: Run) -> None:
            if name not in best or run.rate > best[name].rate:
                best[name] = run
            if name not in best_cpu or run.cpu_rate > best_cpu[name].cpu_rate:
                best_cpu[name] = run

        started = time.perf_counter()
        memory = {p: _capture(url, p, args.chunks) for p in ("ollama", "openai")}
        mem_cases: dict[str, Callable[[], Run]] = {
            f"  in memory: fast parser{' + Recorder' if rec else ''} ({p})": partial(_in_memory, memory[p], p, rec)
            for rec in (False, True) for p in memory
        }
        for rep in range(args.repeats):
            # Interleave: every case once per round, so slow drift in machine load hits all cases alike.
            for name, case in CASES.items():
                # Each case starts from a clean heap: garbage left by the previous one (200k objects)
                # would otherwise make this case's garbage collections slower.
                gc.collect()
                try:
                    run = case(url, args.chunks, args.budget)
                except Exception as exc:  # a failing case is reported, the others still run
                    print(f"  {name}: FAILED ({type(exc).__name__}: {exc})", file=sys.stderr)
                    continue
                keep(name, run)
            for name, mem in mem_cases.items():
                gc.collect()
                keep(name, mem())
            print(f"  round {rep + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)

        width = max(len(n) for n in [*CASES, *mem_cases])
        print(f"{'case':<{width}}  {'chunks/s':>11}  {'per CPU-s':>11}  {'chunks read':>11}")
        for name in [*CASES, *mem_cases]:
            r, c = best.get(name), best_cpu.get(name)
            if r is None or c is None:
                print(f"{name:<{width}}  {'failed':>11}")
            else:
                print(f"{name:<{width}}  {r.rate:>11,.0f}  {c.cpu_rate:>11,.0f}  {r.chunks:>11,}")
        print(f"\n{'ratio':<26} {'wall':>8}  {'CPU':>8}")
        missed = 0
        for label, num, den, target in RATIOS:
            a, b = best.get(KEYS[num]), best.get(KEYS[den])
            ca, cb = best_cpu.get(KEYS[num]), best_cpu.get(KEYS[den])
            if a is None or b is None or b.rate == 0:
                print(f"{label:<26} {'n/a':>8}")
                missed += target is not None
                continue
            ratio = a.rate / b.rate
            cpu = "-" if den.startswith("raw") or ca is None or cb is None or not cb.cpu_rate else (
                f"{ca.cpu_rate / cb.cpu_rate:.2f}x")
            verdict = ""
            if target is not None:
                ok = ratio >= target
                missed += not ok
                verdict = f"target >= {target:g}x  {'PASS' if ok else 'MISS'}"
            print(f"{label:<26} {ratio:>7.2f}x  {cpu:>8}  {verdict}")
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {load:.1f} on {cores} cores")
        if load > cores:
            print("the machine is busy: wall figures are noisy; the CPU column (this process's CPU time per "
                  "chunk) is the steadier cross-check")
        return 1 if missed and args.strict else 0
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()


if __name__ == "__main__":
    raise SystemExit(main())
