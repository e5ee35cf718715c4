"""`workbench demo`: the first thing to run. Streams the same prompts with and without the transport
optimizations from the embedded simulator (TLS, HTTP/2 offered), then prints what each one bought.

Baseline and optimized requests alternate one by one, so drift on a busy machine hits both alike, and the
order within each pair flips every time so neither variant always goes first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import polars as pl

from workbench._exceptions import WorkbenchError
from workbench._types import Backend, ProtocolName, Request, StreamResult, TextDelta
from workbench.client import Client
from workbench.metrics.frames import failure_line, save_frame, to_frame, tokens_note
from workbench.metrics.summary import ratio_ci
from workbench.optimizations import Optimizations
from workbench.simulator import Profile, Simulator

__all__ = ["DEMO_PROMPTS", "demo_profile", "main"]

DEMO_PROMPTS: tuple[str, ...] = (
    "Explain in two sentences why streaming makes a chat feel faster.",
    "What is time to first token, and why do users notice it?",
    "Give three reasons to reuse an HTTP connection.",
    "Summarise what HTTP/2 multiplexing changes for many small requests.",
    "How does a TLS handshake add latency to a new connection?",
    "Write a haiku about waiting for a language model.",
    "What is inter-token latency and how is it measured?",
    "List two ways a client can waste time parsing a token stream.",
    "Why should a stopped stream close its connection at once?",
    "Compare the median and the 99th percentile as latency summaries.",
    "What does a response cache have to key on to be correct?",
    "Describe a fair A/B test between two client configurations.",
)

VARIANTS: dict[str, Optimizations] = {
    "baseline": Optimizations.baseline(),
    "optimized": Optimizations.transport(),
}


def demo_profile(seed: int = 0) -> Profile:
    """A profile shaped like a small local model: tens of ms to the first token, a few ms per token."""
    return Profile(
        seed=seed,
        ttft_ms=35.0,
        ttft_per_prompt_token_ms=0.2,
        token_delay_ms=3.0,
        jitter=0.3,
        default_tokens_min=24,
        default_tokens_max=56,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workbench demo",
        description="Stream the same prompts with the baseline client and with the transport optimizations "
        "(connection pool, HTTP/2, fast parsing, early cancel) and compare TTFT, throughput and connections.",
    )
    p.add_argument("--requests", type=int, default=12, help="prompts per round (default 12, at most 12)")
    p.add_argument("--rounds", type=int, default=3, help="times the prompt set is repeated (default 3)")
    p.add_argument("--protocol", choices=("ollama", "openai"), default=None,
                   help="wire protocol (default: ollama for the simulator, auto-detect for --url)")
    p.add_argument("--no-tls", action="store_true", help="serve the simulator over plain HTTP/1.1")
    p.add_argument("--url", help="a real server (Ollama or OpenAI-compatible) instead of the simulator")
    p.add_argument("--model", help="model name (default: the first model the server lists)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help=argparse.SUPPRESS)
    p.add_argument("--out", default="data/results", help="results directory (default data/results)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no live text and no progress bar")
    return p


class _Style:
    """ANSI emphasis only on a terminal, and never when NO_COLOR is set."""

    def __init__(self, on: bool = False) -> None:
        self.on = on

    @classmethod
    def for_stream(cls, stream: TextIO) -> _Style:
        return cls(stream.isatty() and os.environ.get("NO_COLOR") is None)

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def bold(self, t: str) -> str:
        return self(t, "1")

    def dim(self, t: str) -> str:
        return self(t, "2")

    def good(self, t: str) -> str:
        return self(t, "32")

    def bad(self, t: str) -> str:
        return self(t, "31")


def _schedule(prompts: Sequence[str], rounds: int, model: str) -> list[tuple[str, Request]]:
    """Pairs of (variant, request), alternating which variant goes first in each pair."""
    out: list[tuple[str, Request]] = []
    names = list(VARIANTS)
    k = 0
    for rnd in range(rounds):
        for i, prompt in enumerate(prompts):
            order = names if k % 2 == 0 else names[::-1]
            k += 1
            for name in order:
                tags = {"variant": name, "round": rnd, "prompt_index": i}
                out.append((name, Request.chat(model, prompt, tags=tags)))
    return out


class _LiveText:
    """Writes streamed text as it arrives, wrapping at word boundaries so the answer reads well."""

    def __init__(self, stream: TextIO, width: int) -> None:
        self._out = stream
        self._width = width
        self._col = 0

    def write(self, text: str) -> None:
        parts = text.split(" ")
        for k, word in enumerate(parts):
            if k:
                if self._col + 1 + len(word) > self._width:
                    self._out.write("\n")
                    self._col = 0
                else:
                    self._out.write(" ")
                    self._col += 1
            if "\n" in word:
                self._col = len(word) - word.rfind("\n") - 1
            else:
                self._col += len(word)
            self._out.write(word)
        self._out.flush()


def _listed_model(backend: Backend) -> str:
    with Client(backend) as client:
        return client.default_model()


def _run_one(client: Client, req: Request, live: _LiveText | None) -> StreamResult:
    """One streamed request; returns the result even when it failed (the error is on the result)."""
    try:
        with client.stream(req) as stream:
            for ev in stream:
                if live is not None and isinstance(ev, TextDelta) and ev.text:
                    live.write(ev.text)
            return stream.result
    except WorkbenchError as exc:
        if exc.result is None:
            raise
        return exc.result


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def _col(frame: pl.DataFrame, variant: str, name: str) -> pl.Series:
    return frame.filter((pl.col("variant") == variant) & (pl.col("status") == "ok"))[name].drop_nulls()


def _q(s: pl.Series, q: float) -> float | None:
    v = s.quantile(q, "linear") if s.len() else None
    return None if v is None else float(v)


def _mean(s: pl.Series) -> float | None:
    return float(s.cast(pl.Float64).mean()) if s.len() else None  # type: ignore[arg-type]


def _connect_per_request(frame: pl.DataFrame, variant: str) -> pl.Series:
    # A reused connection costs nothing to set up: count it as 0 ms so the mean is per request, not per
    # connection (otherwise the pool's one handshake would look as costly as the baseline's many).
    f = frame.filter(pl.col("variant") == variant).with_columns(
        pl.when(pl.col("connection_reused").fill_null(False)).then(0.0).otherwise(pl.col("connect_ms"))
        .alias("connect_per_req")
    )
    return f["connect_per_req"].drop_nulls()


def comparison_table(frame: pl.DataFrame, style: _Style | None = None) -> str:
    """The demo's summary table: one line per figure, baseline | optimized | baseline/optimized."""
    st = style or _Style()
    b, o = "baseline", "optimized"
    rows: list[tuple[str, str, str, str, str]] = []

    def add(label: str, vb: float | None, vo: float | None, lower_better: bool, digits: int = 1,
            ci: tuple[float, float] | None = None) -> None:
        ratio = None if vb is None or vo is None or vo == 0.0 else vb / vo
        if ratio is None:
            rtxt, verdict = "-", ""
        else:
            rtxt = f"{ratio:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci and ci[0] == ci[0] else "")
            better = ratio > 1.0 if lower_better else ratio < 1.0
            # A verdict only when the difference is clear: the CI excludes 1 when there is one, else >= 5%.
            clear = (ci[0] > 1.0 or ci[1] < 1.0) if ci and ci[0] == ci[0] else abs(ratio - 1.0) >= 0.05
            verdict = ("better" if better else "worse") if clear else ""
        rows.append((label, _fmt(vb, digits), _fmt(vo, digits), rtxt, verdict))

    tb, to = _col(frame, b, "ttft_ms"), _col(frame, o, "ttft_ms")
    r_ci = ratio_ci(tb.to_numpy(), to.to_numpy(), "median", n_boot=1000) if tb.len() and to.len() else None
    add("TTFT p50 (ms)", _q(tb, 0.5), _q(to, 0.5), True, ci=None if r_ci is None else (r_ci[1], r_ci[2]))
    add("TTFT p99 (ms)", _q(tb, 0.99), _q(to, 0.99), True)
    add("tokens/s p50", _q(_col(frame, b, "tokens_per_s"), 0.5), _q(_col(frame, o, "tokens_per_s"), 0.5),
        False, digits=0)
    add("total time p50 (ms)", _q(_col(frame, b, "done_ms"), 0.5), _q(_col(frame, o, "done_ms"), 0.5), True)
    cb, co = _connect_per_request(frame, b), _connect_per_request(frame, o)
    add("connect ms (mean/request)", _mean(cb), _mean(co), True, digits=2)

    def reuse(v: str) -> str:
        s = frame.filter(pl.col("variant") == v)["connection_reused"]
        known = s.drop_nulls()
        return "-" if not known.len() else f"{known.sum()}/{s.len()} ({_mean(known.cast(pl.Float64)):.0%})"

    def version(v: str) -> str:
        s = frame.filter(pl.col("variant") == v)["http_version"].drop_nulls()
        return "-" if not s.len() else ", ".join(sorted(set(s.to_list())))

    def errors(v: str) -> str:
        s = frame.filter(pl.col("variant") == v)
        return f"{(s['status'] != 'ok').sum()}/{s.height}"

    rows.append(("connections reused", reuse(b), reuse(o), "", ""))
    rows.append(("HTTP version", version(b), version(o), "", ""))
    rows.append(("errors", errors(b), errors(o), "", ""))

    head = ("", "baseline", "optimized", "baseline/optimized", "")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(5)]

    def line(r: tuple[str, ...], bold: bool = False) -> str:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 4)]
        text = "  ".join(cells)
        text = st.bold(text) if bold else text
        verdict = r[4]
        if verdict:
            text += "  " + (st.good(verdict) if verdict == "better" else st.bad(verdict))
        return text

    sep = "-" * (sum(widths[:4]) + 6)
    return "\n".join([line(head, bold=True), sep, *(line(r) for r in rows)])


@contextlib.contextmanager
def _backend(args: argparse.Namespace) -> Iterator[tuple[Backend, str]]:
    """The backend to talk to, and how to name it: a real server (--url) or a freshly started simulator."""
    if args.url:
        backend = Backend(args.url, protocol=args.protocol or "auto", api_key=args.api_key)
        yield backend, f"server at {args.url}"
        return
    protocol: ProtocolName = args.protocol or "ollama"
    tls = not args.no_tls
    with Simulator(demo_profile(args.seed), tls=tls, http2=tls) as sim:
        verify: bool | str = sim.ca_path if tls and sim.ca_path else True
        where = f"simulator at {sim.url} ({'TLS, HTTP/2 offered' if tls else 'plain HTTP/1.1'})"
        yield Backend(sim.url, protocol=protocol, verify=verify, name="simulator"), where


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    st = _Style.for_stream(out)
    if not 1 <= args.requests <= len(DEMO_PROMPTS):
        print(f"workbench demo: --requests must be within 1..{len(DEMO_PROMPTS)}", file=err)
        return 2
    if args.rounds < 1:
        print("workbench demo: --rounds must be >= 1", file=err)
        return 2
    from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

    results: list[StreamResult] = []
    started = time.perf_counter()
    try:
        with _backend(args) as (backend, where):
            clients = {name: Client(backend, optimizations=opts) for name, opts in VARIANTS.items()}
            try:
                # no --model: the first model the server lists (the simulator lists its own), asked on a
                # client of its own so neither variant starts with a connection already open
                model = args.model or _listed_model(backend)
                schedule = _schedule(DEMO_PROMPTS[: args.requests], args.rounds, model)
                print(st.bold("workbench demo") + f": {len(schedule)} streamed requests to the {where}",
                      file=out)
                print(st.dim("  baseline  = new connection per request, HTTP/1.1, line-by-line JSON parsing"),
                      file=out)
                print(st.dim("  optimized = " + " + ".join(VARIANTS["optimized"].enabled())), file=out)
                name, req = schedule[0]
                print(f"\n{st.bold('> ' + req.last_user_text)}  {st.dim('(' + name + ', live)')}", file=out)
                width = min(shutil.get_terminal_size((100, 24)).columns, 100) - 2
                first = _run_one(clients[name], req, None if args.quiet else _LiveText(out, width))
                results.append(first)
                m = first.metrics
                by = " (counted by chunks: the server sent no usage)" if m.tokens_source == "chunks" else ""
                print(st.dim(f"\n  [TTFT {_fmt(m.ttft_ms)} ms, {m.output_tokens} tokens{by}, "
                             f"{_fmt(m.tokens_per_s, 0)} tokens/s]"), file=out)
                if first.status != "ok":
                    print(f"workbench demo: the first request failed: {first.error}", file=err)
                    return 1
                bar = tqdm(schedule[1:], desc="A/B requests", unit="req", disable=args.quiet, file=err,
                           leave=False, dynamic_ncols=True)
                for name, req in bar:
                    results.append(_run_one(clients[name], req, None))
            finally:
                for c in clients.values():
                    c.close()
    except WorkbenchError as exc:
        print(f"workbench demo: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"workbench demo: could not start or reach the server: {exc}", file=err)
        return 1

    frame = to_frame(results)
    wall = time.perf_counter() - started
    rounds = f"{args.rounds} round" + ("s" if args.rounds > 1 else "")
    head = f"{st.bold('Results')} ({len(results)} requests in {wall:.1f} s, {rounds}, interleaved)"
    print(f"\n{head}\n", file=out)
    failed_line = failure_line(frame)
    if failed_line is not None:  # before the table: its "errors" row needs the reason next to it
        print(st.bad(f"workbench demo: {failed_line}") + "\n", file=out)
    print(comparison_table(frame, st), file=out)
    print(st.dim("\n  ratio = baseline / optimized; [..] = 95% bootstrap interval of the TTFT median ratio"),
          file=out)
    tokens = tokens_note(frame)
    if tokens:
        print(st.dim(f"  {tokens}"), file=out)
    if not args.url:
        note = ("  On loopback a new connection costs only the TCP + TLS handshake CPU time; across a\n"
                "  network each one also adds 2-3 round trips before the first token, which the pool saves.")
        print(st.dim(note), file=out)
    path = save_frame(frame, Path(args.out), prefix="demo")
    print(f"\nPer-request results: {path}", file=out)
    print(st.dim("Next: `workbench lab` opens the notebooks (live widgets, toggles, charts)."), file=out)
    failed = frame.filter(pl.col("status") != "ok").height
    if failed == frame.height:
        print(f"workbench demo: every request failed: {failed_line}", file=err)
        return 1
    return 0
