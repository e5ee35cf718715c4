"""Widget traffic for one 10,000-token stream: coalesced + incremental vs the naive widget.

Counts the comm messages and bytes a StreamView would publish on IOPub (a recording comm stands in for the
kernel; the clock is driven by hand, so the figures are exact and do not depend on machine load). The naive
run disables the per-token guard explicitly, to show the cost the guard prevents.

    .venv/bin/python benchmarks/widget_stream.py [--tokens 10000] [--rate-hz 30]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import comm
from comm.base_comm import BaseComm

from workbench._types import TextDelta
from workbench.widgets import StreamView


class RecordingComm(BaseComm):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        self.msgs = 0
        self.nbytes = 0
        self.last = 0
        super().__init__(**kwargs)

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        if msg_type != "comm_msg":
            return
        content = {"data": data or {}, "comm_id": self.comm_id, **keys}
        self.msgs += 1
        self.last = len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode())
        self.nbytes += self.last


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def run(
    tokens: int, tok_per_s: float, *, coalesce: bool, incremental: bool, rate_hz: float
) -> dict[str, float]:
    clock = Clock()
    view = StreamView(
        coalesce_ui=coalesce,
        incremental_render=incremental,
        rate_hz=rate_hz,
        max_naive_updates=None,
        clock=clock,
    )
    rec = view.comm
    assert isinstance(rec, RecordingComm)
    step = int(1e9 / tok_per_s)
    cpu0 = time.process_time()
    view.start()
    text_len = 0
    for i in range(tokens):
        clock.now += step
        piece = f"word{i % 97} "
        text_len += len(piece)
        view.push(None, TextDelta(piece, clock.now))
    view.finish()
    cpu = time.process_time() - cpu0
    assert len(view.text()) == text_len
    view.close()
    # The last message is the final sync (exact text + figures, what the saved notebook keeps).
    return {
        "msgs": rec.msgs,
        "bytes": rec.nbytes,
        "live": rec.nbytes - rec.last,
        "text": text_len,
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--rate-hz", type=float, default=30.0)
    args = ap.parse_args()
    comm.create_comm = RecordingComm

    modes = {
        "coalesced+incremental": (True, True),
        "coalesced only": (True, False),
        "incremental only": (False, True),
        "naive (guard off)": (False, False),
    }
    print(
        f"{args.tokens:,} tokens per stream, coalescing at {args.rate_hz:g} Hz; bytes = comm content JSON; "
        "live = bytes before the final sync"
    )
    header = (
        f"{'tok/s':>7} {'mode':<22} {'msgs':>7} {'bytes':>13} {'bytes/text':>10} "
        f"{'live/text':>9} {'kernel CPU s':>12}"
    )
    for rate in (1_000, 5_000, 20_000):
        print()
        print(header)
        res = {
            name: run(args.tokens, rate, coalesce=c, incremental=i, rate_hz=args.rate_hz)
            for name, (c, i) in modes.items()
        }
        for name, r in res.items():
            print(
                f"{rate:>7,} {name:<22} {r['msgs']:>7,.0f} {r['bytes']:>13,.0f} {r['bytes'] / r['text']:>10.2f} "
                f"{r['live'] / r['text']:>9.2f} {r['cpu_s']:>12.3f}"
            )
        best, naive = res["coalesced+incremental"], res["naive (guard off)"]
        print(
            f"{'':>7} naive / coalesced+incremental: messages x{naive['msgs'] / best['msgs']:,.0f}, "
            f"bytes x{naive['bytes'] / best['bytes']:,.0f}, kernel CPU x{naive['cpu_s'] / max(best['cpu_s'], 1e-9):,.1f}"
        )


if __name__ == "__main__":
    main()
