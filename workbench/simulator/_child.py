"""Entry point of a `ProcessSimulator` child: serve until stdin closes. Not a public command."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from workbench.simulator.profile import Profile
from workbench.simulator.server import Simulator
from workbench.simulator.trace import Trace

_TUPLES = ("models", "embed_models", "trace_ms")


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = orjson.loads(argv[0])
    fields = dict(spec["profile"])
    for name in _TUPLES:
        fields[name] = tuple(fields[name])
    if spec.get("trace"):
        fields["trace"] = Trace.loads(spec["trace"], source="trace")
    sim = Simulator(
        Profile(**fields),
        tls=spec["tls"],
        http2=spec["http2"],
        host=spec["host"],
        port=spec["port"],
        history=spec["history"],
        control=True,
        reuse_port=bool(spec.get("reuse_port", False)),
    )
    with sim:
        info = {"url": sim.url, "ca_path": sim.ca_path, "control_url": sim.control_url}
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        sys.stdout.flush()
        # Blocks until the parent closes our stdin (or dies).
        sys.stdin.buffer.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
