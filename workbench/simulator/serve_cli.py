"""`workbench serve`: run the simulator on a port until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from workbench.simulator.profile import Profile, ProfileError
from workbench.simulator.server import Simulator
from workbench.simulator.trace import Trace

__all__ = ["build_parser", "main"]

# Profile knobs exposed as flags; every other field is reachable per request via X-Sim-Override.
_KNOBS = (
    "ttft_ms",
    "ttft_per_prompt_token_ms",
    "token_delay_ms",
    "jitter",
    "tokens_per_chunk",
    "load_ms",
    "cold_after_s",
    "max_parallel",
    "default_tokens_min",
    "default_tokens_max",
    "error_status",
    "disconnect_after",
    "stall_after",
    "stall_s",
    "malformed_after",
    "truncate_after",
    "error_after",
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="workbench serve",
        description="Serve the LLM simulator (Ollama /api/* and OpenAI /v1/* on one port).",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11434, help="0 picks a free port (default: 11434, Ollama's)")
    ap.add_argument("--tls", action="store_true", help="HTTPS with a fresh self-signed CA (path printed)")
    ap.add_argument("--http2", action="store_true", help="offer HTTP/2 (ALPN h2 with --tls; h2c without)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--trace",
        default=None,
        metavar="FILE",
        help="replay a server recorded with `workbench record` (a .jsonl trace, e.g. data/traces/*.jsonl); "
        "also a JSON list [ttft_ms, gap_ms, ...] (see simulator.trace_from_stamps)",
    )
    ap.add_argument("--instant", action="store_true", help="zero delays (Profile.instant())")
    ap.add_argument("--cold-start", action="store_true", help="the first request per model pays load_ms")
    ap.add_argument(
        "--models", default=None, help="comma-separated model names (default: sim-small,sim-large)"
    )
    types = {f.name: f.type for f in fields(Profile)}
    for name in _KNOBS:
        kind = float if "float" in str(types[name]) else int
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=None, metavar=kind.__name__.upper())
    return ap


def profile_from_args(ns: argparse.Namespace) -> Profile:
    changes: dict[str, Any] = {"seed": ns.seed}
    if ns.cold_start:
        changes["cold_start"] = True
    if ns.models:
        changes["models"] = tuple(m.strip() for m in ns.models.split(",") if m.strip())
    if ns.trace:
        raw = Path(ns.trace).read_bytes()
        if raw.lstrip().startswith(b"{") and b'"format"' in raw.split(b"\n", 1)[0]:
            changes["trace"] = Trace.loads(raw, source=ns.trace)  # a recorded server (workbench record)
        else:
            data = _json_list(ns.trace, raw)
            changes["trace_ms"] = tuple(float(x) for x in data)
    for name in _KNOBS:
        value = getattr(ns, name)
        if value is not None:
            changes[name] = value
    return Profile.instant(**changes) if ns.instant else Profile(**changes)


def _json_list(name: str, raw: bytes) -> list[Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(
            f"{name}: neither a workbench trace (JSON Lines with a header) nor a JSON list ({exc})"
        ) from None
    if isinstance(data, dict):
        data = data.get("trace_ms")
    if not isinstance(data, list) or not data:
        raise ProfileError(
            f"{name}: expected a trace from `workbench record` or a JSON list [ttft_ms, gap_ms, ...]"
        )
    return data


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    try:
        profile = profile_from_args(ns)
    except (ProfileError, TypeError, ValueError, OSError) as exc:
        print(f"workbench serve: {exc}")
        return 2
    sim = Simulator(profile, tls=ns.tls, http2=ns.http2, host=ns.host, port=ns.port)
    try:
        sim.start()
    except (OSError, RuntimeError) as exc:
        print(f"workbench serve: cannot listen on {ns.host}:{ns.port}: {exc}")
        return 1
    models = ", ".join(profile.models)
    print(f"simulator listening on {sim.url}  (Ollama /api/*, OpenAI /v1/*; models: {models})")
    if profile.replay_trace is not None:
        print(f"replaying {ns.trace}: {profile.replay_trace.describe()}")
    if sim.ca_path:
        print(f"CA certificate: {sim.ca_path}  (pass as verify=)")
    print("Ctrl-C to stop", flush=True)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
    print("simulator stopped")
    return 0
