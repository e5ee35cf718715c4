"""`workbench record`: capture a server's timing per request into a trace the simulator can replay.

    workbench record --url http://127.0.0.1:8000 --out trace.jsonl --limit 20 --max-tokens 48
    workbench serve --trace trace.jsonl          # the simulator now answers as that server did

The prompts of a workload go out one at a time (sequential, so no request waits behind another), each
distinct (a repeated prompt would be served from the server's prompt cache and record a shorter TTFT),
through the workbench client with a pooled connection and no cache (a cached answer has no server timing).
One warm-up request goes first and is not recorded (a server's first request pays for loading and
compiling). Per request the trace keeps only what `workbench.simulator.trace` lists: the prompt (or with
`--no-prompt-text` its length and SHA-256), TTFT, every inter-chunk gap, each chunk's text length and token
count, finish reason, output tokens, protocol and endpoint. No API key, header or URL is written.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench._exceptions import ConfigError, WorkbenchError
from workbench._types import Backend, StreamResult
from workbench.client import Client
from workbench.experiments.workloads import PromptItem, Workload, available_prompt_sets
from workbench.optimizations import Optimizations
from workbench.simulator.trace import Trace, TraceRecord, prompt_sha256, spread_tokens

__all__ = ["RecordOutcome", "main", "record", "trace_record"]

_NS_PER_MS = 1_000_000


def _ms(ns: int) -> float:
    return round(ns / _NS_PER_MS, 3)  # microseconds are plenty: perf_counter jitter is larger


def trace_record(result: StreamResult, *, include_prompt_text: bool = True) -> TraceRecord:
    """One finished request as a trace record: its token chunks' stamps, lengths and counts, nothing else.

    Token chunks are those the metrics count (`ChunkRecord.is_output`: answer text, reasoning or a tool-call
    piece), so the record's TTFT and gaps are exactly the result's `ttft_ms` and `itl_ms`.
    """
    out = [c for c in result.chunks if c.is_output]
    chars = tuple(len(c.text) for c in out)
    tokens = result.metrics.output_tokens
    stamps = [c.t_ns for c in out]
    prompt = result.request.last_user_text
    return TraceRecord(
        ttft_ms=_ms(stamps[0] - result.sent_ns) if stamps else None,
        gaps_ms=tuple(_ms(b - a) for a, b in itertools.pairwise(stamps)),
        chunk_chars=chars,
        chunk_tokens=spread_tokens(tokens, chars),
        output_tokens=tokens,
        finish_reason=result.finish_reason,
        protocol=result.protocol,
        endpoint=result.request.endpoint,
        prompt_sha256=prompt_sha256(prompt),
        prompt_chars=len(prompt),
        prompt=prompt if include_prompt_text else None,
        tokens_source=result.metrics.tokens_source,
    )


@dataclass
class RecordOutcome:
    """A recording: the trace, and the requests that failed (not in the trace) as `kind: message` lines."""

    trace: Trace
    failed: list[str] = field(default_factory=list)
    skipped_repeats: int = 0


def _distinct(items: Sequence[PromptItem], limit: int | None) -> tuple[list[PromptItem], int]:
    """The first `limit` distinct prompts, and how many repeats were passed over on the way."""
    seen: set[str] = set()
    out: list[PromptItem] = []
    skipped = 0
    for it in items:
        if limit is not None and len(out) >= limit:
            break
        if it.text in seen:
            skipped += 1
            continue
        seen.add(it.text)
        out.append(it)
    return out, skipped


def record(
    backend: Backend | str,
    workload: Workload,
    *,
    limit: int | None = None,
    include_prompt_text: bool = True,
    warmup: int = 1,
    note: str = "",
    progress: Callable[[int, int, StreamResult | None], None] | None = None,
) -> RecordOutcome:
    """Send the workload's distinct prompts one at a time and record each answer's timing.

    `limit` counts distinct prompts. Failed requests are left out of the trace and listed on the outcome;
    if none succeeds, raises the first failure (a WorkbenchError saying what the server answered).
    """
    items, repeats = _distinct(workload.items, limit)
    opts = Optimizations.baseline().replace(connection_pool=True)
    failed: list[str] = []
    records: list[TraceRecord] = []
    first_error: WorkbenchError | None = None
    with Client(backend, optimizations=opts) as client:
        model = workload.model or client.default_model()
        wl = workload.with_options(model=model)
        for i in range(warmup):
            client.run(wl.warmup_request(i))
        for n, item in enumerate(items):
            try:
                res: StreamResult | None = client.run(wl.request(item))
            except WorkbenchError as exc:
                first_error = first_error or exc
                failed.append(f"{item.id}: {type(exc).__name__}: {exc}")
                res = None
            if res is not None:
                records.append(trace_record(res, include_prompt_text=include_prompt_text))
            if progress is not None:
                progress(n + 1, len(items), res)
    if not records:
        if first_error is not None:
            raise first_error
        raise ConfigError("no prompts to record", hint="check --prompts and --limit")
    trace = Trace(
        records=tuple(records),
        model=model,
        recorded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        note=note,
        max_tokens=workload.max_tokens,
        prompt_text=include_prompt_text,
    )
    return RecordOutcome(trace=trace, failed=failed, skipped_repeats=repeats)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench record", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the server to record (Ollama or OpenAI-compatible)")
    p.add_argument("--out", required=True, help="trace file to write (JSON Lines)")
    p.add_argument("--model", default=None, help="model name (default: the first model the server lists)")
    p.add_argument(
        "--prompts",
        default="mixed",
        help=f"a shipped prompt set ({', '.join(available_prompt_sets())}) or a JSONL file of prompts",
    )
    p.add_argument("--limit", type=int, default=20, help="record this many distinct prompts (default 20)")
    p.add_argument("--no-prompt-text", action="store_true", help="keep only each prompt's length and SHA-256")
    p.add_argument("--max-tokens", type=int, default=64, help="per request (default 64; 0: the server's)")
    p.add_argument("--endpoint", choices=["chat", "completion"], default="chat")
    p.add_argument("--protocol", choices=["auto", "openai", "ollama"], default="auto")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up requests first (default 1)")
    p.add_argument(
        "--api-key",
        default=None,
        help="sent as a header, never written to the trace (default: $WORKBENCH_API_KEY or $OPENAI_API_KEY)",
    )
    p.add_argument("--ca", default=None, help="CA bundle to trust (TLS)")
    p.add_argument("--note", default="", help="free text for the header: server, model file, machine")
    p.add_argument("--quiet", action="store_true")
    return p


def _workload(args: argparse.Namespace) -> Workload:
    common: dict[str, Any] = {
        "model": args.model,
        "max_tokens": args.max_tokens or None,
        "temperature": args.temperature,
        "endpoint": args.endpoint,
    }
    if Path(args.prompts).suffix == ".jsonl" or Path(args.prompts).is_file():
        return Workload.from_jsonl(args.prompts, **common)
    return Workload.prompts(args.prompts, **common)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    protocol: Literal["auto", "openai", "ollama"] = args.protocol
    try:
        workload = _workload(args)
        key = args.api_key or os.environ.get("WORKBENCH_API_KEY") or os.environ.get("OPENAI_API_KEY")
        backend = Backend(args.url, protocol=protocol, api_key=key or None, verify=args.ca or True)

        def show(n: int, total: int, res: StreamResult | None) -> None:
            if args.quiet:
                return
            if res is None:
                print(f"  {n}/{total} failed", file=sys.stderr)
            else:
                m = res.metrics
                itl = _median(list(m.itl_ms))
                print(
                    f"  {n}/{total}  ttft {_fmt(m.ttft_ms)}  itl p50 {_fmt(itl)}  "
                    f"{m.output_tokens} tokens ({m.tokens_source})  finish {res.finish_reason}",
                    file=sys.stderr,
                )

        outcome = record(
            backend,
            workload,
            limit=args.limit,
            include_prompt_text=not args.no_prompt_text,
            warmup=args.warmup,
            note=args.note,
            progress=show,
        )
    except WorkbenchError as exc:
        print(f"workbench record: nothing recorded: {exc}", file=sys.stderr)
        return 1
    trace = outcome.trace
    path = trace.dump(args.out)
    s = trace.summary()
    print(f"recorded {len(trace)} requests of {trace.model} to {path}")
    print(f"  TTFT p50 {_fmt(s['ttft_ms_p50'])}, ITL p50 {_fmt(s['itl_ms_p50'])}")
    counted = sum(1 for r in trace.records if r.tokens_source == "chunks")
    if counted:
        print(f"  output tokens of {counted} requests counted from chunks: the server sent no usage")
    if outcome.skipped_repeats:
        print(f"  {outcome.skipped_repeats} repeated prompts skipped (a prompt cache would shorten TTFT)")
    if outcome.failed:
        print(f"  {len(outcome.failed)} requests failed and are not in the trace:", file=sys.stderr)
        for line in outcome.failed[:5]:
            print(f"    {line}", file=sys.stderr)
    print(f"replay: workbench serve --trace {path}")
    return 1 if outcome.failed else 0
