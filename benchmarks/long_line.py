"""Long-line cost: framing an unterminated 8 MB and 32 MB line (and 32 MB of SSE comment lines never
followed by a blank line) in both parser modes, fed in 16 KiB reads as a socket hands them over.

One command: `.venv/bin/python benchmarks/long_line.py`. Prints seconds and seconds per MB of each case
and the ratio of 32 MB's cost per MB to 8 MB's: framing is linear when that ratio is near 1 (a parser that
re-scans its buffer on every read would show ~4). Target (issue 11): ratio <= 2 for every case. The limit
(`max_event_bytes`) is set above the line here so the framing itself is timed; at the default limit the
same streams end in MalformedStreamError after 8 MiB (timed in the last column).
"""

from __future__ import annotations

import argparse
import sys
import time

from workbench._exceptions import MalformedStreamError
from workbench._types import ProtocolName
from workbench.protocols import make_parser

MB = 1_000_000
READ = 16 * 1024
TARGET = 2.0


def _piece(kind: str) -> bytes:
    if kind == "comments":
        return (b": ping\n" * (READ // 7 + 1))[:READ]
    return b"x" * READ


def _head(protocol: ProtocolName, kind: str) -> bytes:
    if kind == "comments":
        return b""
    return b'{"message":{"content":"' if protocol == "ollama" else b'data: {"choices":[{"delta":{"content":"'


def _seconds(protocol: ProtocolName, fast: bool, kind: str, size: int, cap: int | None) -> float:
    parser = make_parser(protocol, fast=fast, max_event_bytes=cap or size * 2)
    piece = _piece(kind)
    t0 = time.perf_counter_ns()
    try:
        parser.feed(_head(protocol, kind), 0)
        for _ in range(size // READ):
            parser.feed(piece, 0)
            if parser.error is not None:
                raise parser.error
    except MalformedStreamError:
        if cap is None:
            raise
    return (time.perf_counter_ns() - t0) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best is kept")
    args = ap.parse_args(argv)
    cases: list[tuple[str, ProtocolName, str]] = [
        ("ollama NDJSON line", "ollama", "line"),
        ("openai SSE line", "openai", "line"),
        ("openai SSE comments", "openai", "comments"),
    ]
    print(f"reads of {READ // 1024} KiB, best of {args.repeat}; limit above the line unless said\n")
    head = f"{'case':<30}{'8 MB s':>9}{'s/MB':>9}{'32 MB s':>10}{'s/MB':>9}{'32/8 per MB':>13}"
    print(head + f"{'at 8 MiB cap':>14}  verdict")
    ok = True
    for fast in (True, False):
        for label, protocol, kind in cases:
            name = f"{'fast' if fast else 'baseline'} {label}"
            small = min(_seconds(protocol, fast, kind, 8 * MB, None) for _ in range(args.repeat))
            big = min(_seconds(protocol, fast, kind, 32 * MB, None) for _ in range(args.repeat))
            capped = min(_seconds(protocol, fast, kind, 32 * MB, 8 * 1024 * 1024) for _ in range(args.repeat))
            per_small, per_big = small / 8, big / 32
            ratio = per_big / per_small if per_small > 0 else float("inf")
            good = ratio <= TARGET
            ok &= good
            print(f"{name:<30}{small:>9.4f}{per_small:>9.5f}{big:>10.4f}{per_big:>9.5f}{ratio:>12.2f}x"
                  f"{capped:>13.4f}s  {'PASS' if good else 'FAIL'} (target <= {TARGET:g}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
