"""The measurements behind `workbench.experiments.scenarios`: one function per toggle, (n, seed) -> Measured.

Each starts its own simulator in a child process (`ProcessSimulator`), so the server does not share the
client's GIL, and measures baseline and toggle-on in the same run. `exercised` says whether the toggle
acted at all in the run (a connection reused, an HTTP/2 stream, a cache hit, a stop, a warm-up request
the server saw, requests in flight together, a policy-forced prompt): a toggle that did not act gets
"not exercised", never an effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench._types import Backend, Request, StreamResult, TextDelta, Timeouts
from workbench.client import AsyncClient
from workbench.experiments.results import RunResult
from workbench.experiments.runner import compare
from workbench.experiments.workloads import Workload
from workbench.optimizations import Optimizations
from workbench.simulator import ProcessSimulator, Profile

__all__ = ["Measured"]

MODEL = "sim-small"


@dataclass(slots=True)
class Measured:
    """Samples of the scenario's metric per arm, whether the toggle acted, and numbers worth quoting."""

    baseline: list[float]
    toggled: list[float]
    exercised: bool
    why_not: str = ""
    detail: str = ""
    numbers: dict[str, float] = field(default_factory=dict)  # named figures (the seed claims quote them)


def _ab(
    workload: Workload,
    base: Optimizations,
    on: Optimizations,
    backend: Backend,
    seed: int,
    **kwargs: Any,
) -> RunResult:
    return compare(
        workload,
        {"baseline": base, "toggle": on},
        backend=backend,
        interleave=True,
        progress=False,
        seed=seed,
        baseline="baseline",
        **kwargs,
    )


def _col(run: RunResult, variant: str, metric: str) -> list[float]:
    frame = run.measured.filter((pl.col("variant") == variant) & (pl.col("status") == "ok"))
    return [float(x) for x in frame.get_column(metric).drop_nulls().to_list()]


def _failures(run: RunResult) -> str:
    bad = run.measured.filter(pl.col("status") != "ok")
    if bad.height == 0:
        return ""
    first = bad.get_column("error").drop_nulls().head(1).to_list()
    return f"{bad.height} request(s) failed ({first[0] if first else bad.get_column('status')[0]})"


def _med(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


@contextlib.contextmanager
def _server(profile: Profile, *, tls: bool = False, http2: bool = False) -> Iterator[tuple[Any, Backend]]:
    with ProcessSimulator(profile, tls=tls, http2=http2) as sim:
        verify: bool | str = sim.ca_path if sim.ca_path else True
        yield sim, Backend(sim.url, protocol="openai", verify=verify, name="simulator")


def _synthetic(n: int, out_tokens: int, seed: int) -> Workload:
    return Workload.synthetic(
        n, input_tokens=16, output_tokens=out_tokens, seed=seed, model=MODEL
    ).with_options(max_tokens=out_tokens)


# ---- transport ----


def pool(n: int, seed: int) -> Measured:
    """Short answers over TLS: a new connection per request pays TCP + TLS handshakes; a pool pays once."""
    with _server(Profile.instant(ttft_ms=1.0), tls=True) as (_, be):
        run = _ab(
            _synthetic(n, 4, seed), Optimizations(), Optimizations(connection_pool=True), be, seed, warmup=1
        )
    reused = (
        run.measured.filter(pl.col("variant") == "toggle").get_column("connection_reused").fill_null(False)
    )
    a, b = _col(run, "baseline", "e2e_ms"), _col(run, "toggle", "e2e_ms")
    conn_a, conn_b = _col(run, "baseline", "connect_ms"), _col(run, "toggle", "connect_ms")
    saved = _med(a) - _med(b)
    return Measured(
        a,
        b,
        exercised=bool(reused.any()),
        why_not="no request reused a pooled connection",
        detail=f"{int(reused.sum())}/{reused.len()} reused; connect {_med(conn_a):.1f} -> "
        f"{_med(conn_b):.1f} ms; saved {saved:.1f} ms/request {_failures(run)}".strip(),
        numbers={"saved_ms": saved},
    )


def http2(n: int, seed: int) -> Measured:
    """Many streams in flight over TLS: HTTP/2 multiplexes them on one connection, HTTP/1.1 opens one each."""
    prof = Profile(ttft_ms=20.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=2.0, jitter=0.1)
    with _server(prof, tls=True, http2=True) as (sim, be):
        run = _ab(
            _synthetic(n, 16, seed),
            Optimizations(connection_pool=True),
            Optimizations(connection_pool=True, http2=True),
            be,
            seed,
            warmup=1,
            arrival="concurrency=24",
        )
        versions = sim.stats().http_versions
    on = run.measured.filter(pl.col("variant") == "toggle").get_column("http_version").drop_nulls()
    h2 = int(on.str.contains("2").sum())
    return Measured(
        _col(run, "baseline", "ttft_ms"),
        _col(run, "toggle", "ttft_ms"),
        exercised=h2 > 0,
        why_not="no toggle-on request went over HTTP/2",
        detail=f"{h2}/{on.len()} toggle-on streams HTTP/2; server saw {versions} {_failures(run)}".strip(),
    )


def parse(n: int, seed: int) -> Measured:
    """A server that sends as fast as it can, 32 tokens per chunk: the client's parsing is the bottleneck."""
    with _server(Profile.instant(tokens_per_chunk=32)) as (_, be):
        run = _ab(
            _synthetic(n, 4000, seed), Optimizations(), Optimizations(fast_parse=True), be, seed, warmup=1
        )
    # The server writes every chunk at once (they share one stamp, so per-token TPOT is 0): the client's
    # rate over the whole stream, tokens / e2e, is what its parsing allows.
    a, b = _stream_rate(run, "baseline"), _stream_rate(run, "toggle")
    return Measured(
        a,
        b,
        exercised=bool(a and b),
        why_not="no stream finished",
        detail=f"{_med(a):,.0f} -> {_med(b):,.0f} tok/s {_failures(run)}".strip(),
        numbers={"base_tok_s": _med(a), "fast_tok_s": _med(b)},
    )


def _stream_rate(run: RunResult, variant: str) -> list[float]:
    f = run.measured.filter((pl.col("variant") == variant) & (pl.col("status") == "ok"))
    rate = (f.get_column("output_tokens").cast(pl.Float64) * 1000.0 / f.get_column("e2e_ms")).drop_nulls()
    return [float(x) for x in rate.to_list()]


# ---- early cancel ----


class _StopAfter:
    """A client whose streams are stopped by the caller after `k` text chunks (a user pressing stop)."""

    def __init__(self, inner: AsyncClient, k: int) -> None:
        self.inner, self.k = inner, k

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[Any]:
        async with self.inner.stream(request) as s:
            yield _Stopping(s, self.k)


class _Stopping:
    def __init__(self, inner: Any, k: int) -> None:
        self.inner, self.k, self.seen = inner, k, 0

    def cancel(self) -> None:
        self.inner.cancel()

    @property
    def result(self) -> StreamResult:
        out: StreamResult = self.inner.result
        return out

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for ev in self.inner:
            yield ev
            if isinstance(ev, TextDelta) and ev.text:
                self.seen += 1
                if self.seen == self.k:
                    self.inner.cancel()


def cancel(n: int, seed: int, k: int = 4, tokens: int = 120) -> Measured:
    """Stop after k tokens of a 120-token answer: without early cancel the client reads the rest."""
    prof = Profile(ttft_ms=5.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=2.0, jitter=0.0)

    def factory(backend: Backend, opts: Optimizations, timeouts: Timeouts) -> Any:
        return _StopAfter(AsyncClient(backend, optimizations=opts, timeouts=timeouts), k)

    with _server(prof) as (_, be):
        run = _ab(
            _synthetic(n, tokens, seed),
            Optimizations(connection_pool=True),
            Optimizations(connection_pool=True, early_cancel=True),
            be,
            seed,
            client_factory=factory,
        )
    wasted: dict[str, list[float]] = {"baseline": [], "toggle": []}
    after: dict[str, list[float]] = {"baseline": [], "toggle": []}
    for r in run.results:
        variant = str(r.request.tags.get("variant"))
        if variant not in wasted or r.wasted_ms_after_stop is None:
            continue
        wasted[variant].append(float(r.wasted_ms_after_stop))
        after[variant].append(float(r.server.get("client_after_stop", {}).get("chunks", 0)))
    stopped = len(wasted["toggle"]) > 0 and len(wasted["baseline"]) > 0
    return Measured(
        wasted["baseline"],
        wasted["toggle"],
        exercised=stopped,
        why_not="no stream was stopped",
        detail=f"after the stop: {_med(wasted['baseline']):.1f} -> {_med(wasted['toggle']):.2f} ms, "
        f"{_med(after['baseline']):.0f} -> {_med(after['toggle']):.0f} tokens read",
        numbers={"base_stop_ms": _med(wasted["baseline"]), "cancel_stop_ms": _med(wasted["toggle"])},
    )


# ---- caches ----


def _hits(run: RunResult, kinds: tuple[str, ...]) -> pl.DataFrame:
    return run.measured.filter((pl.col("variant") == "toggle") & pl.col("cache").is_in(list(kinds)))


def _cache_measured(
    run: RunResult,
    kinds: tuple[str, ...],
    what: str,
    relation: str | None = None,
    *,
    repeats_only: bool = False,
) -> Measured:
    """e2e per request; `relation`: only the requests of that relation (e.g. the paraphrases);
    `repeats_only`: only the 2nd and later asks of each prompt (the ones a cache can answer), so the
    comparison is not a bimodal pool of first-ask misses and hits."""
    hits = _hits(run, kinds)
    pooled = relation is None and not repeats_only
    if relation is not None:
        run = dataclasses.replace(run, frame=run.frame.filter(pl.col("relation") == relation))
    if repeats_only:
        run = dataclasses.replace(run, frame=run.frame.filter(pl.col("repeat") > 0))
    a, b = _col(run, "baseline", "e2e_ms"), _col(run, "toggle", "e2e_ms")
    hit_e2e = [float(x) for x in hits.get_column("e2e_ms").drop_nulls().to_list()]
    hit_ttft = [float(x) for x in hits.get_column("ttft_ms").drop_nulls().to_list()]
    n_on = len(b)
    return Measured(
        a,
        b,
        exercised=hits.height > 0,
        why_not=f"no {what} hit",
        detail=f"{hits.height}/{n_on} {what} hits; hit e2e {_med(hit_e2e):.2f} ms, hit ttft "
        f"{_med(hit_ttft) * 1000:.0f} µs"
        f"{' (e2e pools misses and hits)' if pooled else ''} {_failures(run)}".strip(),
        numbers={"hit_e2e_ms": _med(hit_e2e), "hit_ttft_us": _med(hit_ttft) * 1000, "miss_e2e_ms": _med(a)},
    )


_CACHE_PROFILE = Profile(ttft_ms=60.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=3.0, jitter=0.1)


def exact(n: int, seed: int) -> Measured:
    """Each prompt asked 3 times: the exact cache answers the 2nd and 3rd from memory (e2e of those asks)."""
    with _server(_CACHE_PROFILE) as (_, be):
        run = _ab(
            _synthetic(n, 24, seed), Optimizations(), Optimizations(exact_cache=True), be, seed, repeats=3
        )
    return _cache_measured(run, ("exact",), "exact", repeats_only=True)


def _retyped(text: str) -> str:
    """The same question typed again: lower case, no final punctuation, a trailing "please"."""
    return text.lower().rstrip("?.! ") + " please"


def paraphrase_workload(n: int) -> Workload:
    """n questions of the shipped set, then each retyped (lower case, no "?", "please" added).

    The default semantic tier is tuned for a 5% false-hit budget (`workbench.cache.audit`); it serves
    retyped questions and rejects the set's reworded paraphrases, so this is the workload where it acts.
    """
    items = [it for it in Workload.prompts("mixed") if it.relation == "unique"][: max(1, n)]
    rows = [it.as_dict() for it in items]
    rows += [
        {
            **r,
            "id": f"{r['id']}-retyped",
            "text": _retyped(str(r["text"])),
            "relation": "paraphrase",
            "expected_cache": "semantic",
        }
        for r in rows
    ]
    return Workload.from_records(rows, model=MODEL, max_tokens=24)


def semantic(n: int, seed: int) -> Measured:
    """Questions then the same questions retyped: no exact key matches, the semantic tier can answer."""
    with _server(_CACHE_PROFILE) as (_, be):
        run = _ab(paraphrase_workload(n), Optimizations(), Optimizations(semantic_cache=True), be, seed)
    return _cache_measured(run, ("semantic",), "semantic", relation="paraphrase")


_FILL = """
import asyncio, json, sys
from workbench import Backend, Optimizations
from workbench.client import AsyncClient
from workbench.experiments.workloads import Workload
from workbench.variant import build

url, verify, folder, rows = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
async def main():
    be = Backend(url, protocol="openai", verify=verify if verify != "1" else True)
    cache = build(Optimizations(disk_cache=True), disk_dir=folder).cache
    wl = Workload.from_records(rows, model="__MODEL__", max_tokens=24)
    async with AsyncClient(be, optimizations=Optimizations(disk_cache=True), cache=cache) as c:
        for item in wl:
            await c.run(wl.request(item))
    cache.close() if hasattr(cache, "close") else None
asyncio.run(main())
""".replace("__MODEL__", MODEL)


def disk(n: int, seed: int) -> Measured:
    """Fill the disk tier in a child process, exit it, then answer from the same folder in this one."""
    from workbench.variant import build

    wl = _synthetic(n, 24, seed)
    with _server(_CACHE_PROFILE) as (_, be), tempfile.TemporaryDirectory(prefix="wb-disk-scn-") as folder:
        rows = json.dumps([it.as_dict() for it in wl])
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _FILL,
                be.url,
                str(be.verify if be.verify is not True else "1"),
                folder,
                rows,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the process filling the disk tier failed: {tail[0]}")

        def factory(backend: Backend, opts: Optimizations, timeouts: Timeouts) -> Any:
            if not opts.disk_cache:
                return AsyncClient(backend, optimizations=opts, timeouts=timeouts)
            cache = build(opts, disk_dir=folder).cache
            return AsyncClient(backend, optimizations=opts, timeouts=timeouts, cache=cache)

        run = _ab(wl, Optimizations(), Optimizations(disk_cache=True), be, seed, client_factory=factory)
        files = sorted(p.name for p in Path(folder).iterdir())
    m = _cache_measured(run, ("exact", "disk"), "disk")
    m.detail += f"; folder held {files}"
    return m


# ---- runner toggles ----


def prewarm(n: int, seed: int) -> Measured:
    """A model that unloads after 0.3 s idle: the first timed request pays a 400 ms load unless prewarmed."""
    prof = Profile(
        ttft_ms=20.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=2.0, load_ms=400.0, cold_after_s=0.3
    )
    arms: dict[bool, list[float]] = {False: [], True: []}
    extra: dict[bool, int] = {False: 0, True: 0}
    wl = _synthetic(1, 8, seed)
    with _server(prof) as (sim, be):
        for on in _alternating(n, seed):
            time.sleep(0.45)  # idle past cold_after_s: the model is unloaded again
            before = sim.stats().requests
            run = compare(wl, {"v": Optimizations(prewarm=on)}, backend=be, progress=False, seed=seed)
            extra[on] += sim.stats().requests - before - run.measured.height
            arms[on].extend(_col(run, "v", "ttft_ms"))
    return Measured(
        arms[False],
        arms[True],
        exercised=extra[True] > 0,
        why_not="the server saw no warm-up request",
        detail=f"first-request ttft {_med(arms[False]):.0f} -> {_med(arms[True]):.0f} ms; "
        f"warm-up requests seen: {extra[False]} off, {extra[True]} on",
        numbers={"cold_ttft_ms": _med(arms[False]), "warm_ttft_ms": _med(arms[True])},
    )


def _alternating(trials: int, seed: int) -> list[bool]:
    """Both arms per trial, in a seeded order (per-run metrics cannot interleave inside one run)."""
    rng = random.Random(seed)
    out: list[bool] = []
    for _ in range(trials):
        pair = [False, True]
        rng.shuffle(pair)
        out.extend(pair)
    return out


def _max_in_flight(frame: pl.DataFrame) -> int:
    spans = sorted(
        zip(frame.get_column("sent_ns").to_list(), frame.get_column("end_ns").to_list(), strict=True)
    )
    best, ends = 0, list[int]()
    for start, end in spans:
        ends = [e for e in ends if e > start] + [end]
        best = max(best, len(ends))
    return best


def concurrency(n: int, seed: int, batch: int = 8, workers: int = 4) -> Measured:
    """A batch of 8 requests: the makespan (first send to last end) with 1 worker and with 4."""
    prof = Profile(ttft_ms=30.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=3.0, jitter=0.1)
    arms: dict[bool, list[float]] = {False: [], True: []}
    flight: dict[bool, int] = {False: 0, True: 0}
    wl = _synthetic(batch, 16, seed)
    with _server(prof) as (_, be):
        for on in _alternating(n, seed):
            opts = Optimizations(connection_pool=True, concurrency=workers if on else 1)
            run = compare(wl, {"v": opts}, backend=be, progress=False, seed=seed, warmup=1)
            f = run.measured.filter(pl.col("status") == "ok")
            if f.height:
                end_ns, sent_ns = f.get_column("end_ns").to_list(), f.get_column("sent_ns").to_list()
                arms[on].append((max(end_ns) - min(sent_ns)) / 1e6)
                flight[on] = max(flight[on], _max_in_flight(f))
    return Measured(
        arms[False],
        arms[True],
        exercised=flight[True] > 1,
        why_not=f"never more than one request in flight with concurrency={workers}",
        detail=f"batch {_med(arms[False]):.0f} -> {_med(arms[True]):.0f} ms; "
        f"max in flight {flight[False]} vs {flight[True]}; "
        f"{batch * 1000 / _med(arms[False]):.0f} -> {batch * 1000 / _med(arms[True]):.0f} req/s",
        numbers={
            "base_req_s": batch * 1000 / _med(arms[False]),
            "pool_req_s": batch * 1000 / _med(arms[True]),
        },
    )


def router(n: int, seed: int) -> Measured:
    """The shipped labelled prompts, routed with the fast path off and on (per decision µs, interleaved)."""
    from workbench.router import Router, Target, evaluate, load_prompts

    prompts = load_prompts()
    forced = [p for p in prompts if p.forced] or prompts
    r = Router(
        {
            "small": Target("http://127.0.0.1:1", "sim-small"),
            "large": Target("http://127.0.0.1:1", "sim-large"),
        }
    )
    rng = random.Random(seed)
    arms: dict[bool, list[float]] = {False: [], True: []}
    skipped = 0
    for i in range(n):
        p = forced[i % len(forced)]
        for fast in rng.sample([False, True], 2):
            d = r.route(list(p.messages), fast_path=fast)
            arms[fast].append(d.routing_us)
            skipped += int(fast and d.fast_path)
    accuracy = _accuracy(evaluate(r))
    return Measured(
        arms[False],
        arms[True],
        exercised=skipped > 0,
        why_not="no prompt was forced by a policy (the fast path never applied)",
        detail=f"{len(forced)} policy-forced prompts; classification skipped {skipped}/{n}; "
        f"accuracy on the labelled set {accuracy}",
    )


def _accuracy(frame: pl.DataFrame) -> str:
    return f"{float(frame.get_column('correct').mean() or 0.0):.0%} of {frame.height}"  # type: ignore[arg-type]


# ---- view ----


def _fast_streams(n: int, seed: int) -> list[StreamResult]:
    """n streams of 600 tokens at ~5,000 tok/s (0.2 ms per token, one token per chunk)."""
    prof = Profile(
        ttft_ms=5.0, ttft_per_prompt_token_ms=0.0, token_delay_ms=0.2, jitter=0.0, precise_timer=True
    )
    wl = _synthetic(n, 600, seed)

    async def go(be: Backend) -> list[StreamResult]:
        async with AsyncClient(be, optimizations=Optimizations(connection_pool=True)) as c:
            return [await c.run(wl.request(it)) for it in wl]

    with _server(prof) as (_, be), ThreadPoolExecutor(1) as pool:
        # a thread of its own: in a notebook this thread's event loop is already running
        return pool.submit(asyncio.run, go(be)).result()


def _view(n: int, seed: int, column: str, toggle: str) -> Measured:
    from workbench.view import view_columns

    base = Optimizations()
    on = base.replace(**{toggle: True})
    a: list[float] = []
    b: list[float] = []
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    for res in _fast_streams(n, seed):
        ca = view_columns(res, coalesce=base.coalesce_ui, incremental=base.incremental_render)
        cb = view_columns(res, coalesce=on.coalesce_ui, incremental=on.incremental_render)
        a.append(float(ca[column]))
        b.append(float(cb[column]))
        cpu["a"].append(float(ca["ui_cpu_ms"]))
        cpu["b"].append(float(cb["ui_cpu_ms"]))
    return Measured(
        a,
        b,
        exercised=a != b,
        why_not="the view sent the same for both settings",
        detail=f"{column} {_med(a):,.0f} -> {_med(b):,.0f} per stream; kernel CPU {_med(cpu['a']):.2f} -> "
        f"{_med(cpu['b']):.2f} ms",
        numbers={"base": _med(a), "on": _med(b)},
    )


def coalesce(n: int, seed: int) -> Measured:
    """Front-end messages per stream at ~5,000 tok/s, with and without the coalescing window."""
    return _view(n, seed, "ui_messages", "coalesce_ui")


def incremental(n: int, seed: int) -> Measured:
    """JSON bytes to the front end per stream: whole text each update vs only the new text."""
    return _view(n, seed, "ui_bytes", "incremental_render")
