"""Widget traffic for one 10,000-token stream: coalesced + incremental vs the naive widget.

Counts the comm messages and bytes a StreamView would publish on IOPub (a recording comm stands in for the
kernel; the clock is driven by hand, so the figures are exact and do not depend on machine load). The naive
run disables the per-token guard explicitly, to show the cost the guard prevents.

"live view" runs have a front end that said hello and acks each end (a small stand-in for stream_view.js:
it rebuilds the text from the deltas and checks it against the end's length + CRC-32), so the end is a small
custom message; "headless" runs (nbclient, a script) end with the full sync that carries the text again.

    .venv/bin/python benchmarks/widget_stream.py [--tokens 10000] [--rate-hz 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import zlib
from collections.abc import Callable
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
        self.updates = 0
        self.listener: Callable[[dict[str, Any]], None] | None = None
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
        self.updates += data.get("method") == "update"
        if self.listener is not None:
            self.listener(data)


class AckingFrontend:
    """Rebuilds the live text from deltas and acks an end whose UTF-16 length + CRC-32 match."""

    def __init__(self) -> None:
        self.text = ""
        self.outbox: list[dict[str, Any]] = []

    def __call__(self, data: dict[str, Any]) -> None:
        c = data.get("content", {})
        if c.get("t") == "start":
            self.text = ""
        elif c.get("t") == "d":
            for d in c["lanes"].values():
                self.text += d["s"]  # offsets line up here: one lane, nothing dropped
        elif c.get("t") == "end":
            units = self.text.encode("utf-16-le", "surrogatepass")[: 2 * c["at"]]
            self.text = units.decode("utf-16-le", "surrogatepass") + c["s"]
            data16 = self.text.encode("utf-16-le", "surrogatepass")
            if len(data16) // 2 == c["n"] and zlib.crc32(data16) == c["h"]:
                self.outbox.append({"t": "ack", "lane": c["lane"], "seq": c["seq"], "h": c["h"]})


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def run(
    tokens: int, tok_per_s: float, *, coalesce: bool, incremental: bool, rate_hz: float, live: bool = False
) -> dict[str, float]:
    """One stream; with `live`, on a running loop after a front end's hello, with its ack delivered."""
    if live:

        async def on_loop() -> dict[str, float]:
            return _run(tokens, tok_per_s, coalesce=coalesce, incremental=incremental, rate_hz=rate_hz, live=True)

        return asyncio.run(on_loop())
    return _run(tokens, tok_per_s, coalesce=coalesce, incremental=incremental, rate_hz=rate_hz, live=False)


def _run(
    tokens: int, tok_per_s: float, *, coalesce: bool, incremental: bool, rate_hz: float, live: bool
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
    fe = AckingFrontend()
    if live:
        rec.listener = fe
        view._handle_custom_msg({"t": "hello"}, [])
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
    for msg in fe.outbox:  # the ack: the kernel records the final text without sending anything
        view._handle_custom_msg(msg, [])
    cpu = time.process_time() - cpu0
    text = view.text()
    assert len(text) == text_len
    # Whichever way the stream ended, the kernel-side synced value is the exact final text.
    assert view.get_state()["_texts"]["output"] == text
    if live and incremental:
        assert rec.updates == 0 and fe.text == text and view.fallback_syncs == 0
    view.close()
    return {
        "msgs": rec.msgs,
        "bytes": rec.nbytes,
        "end": rec.last,  # the end: a custom `end` (live view) or the full sync (headless)
        "text": len(text.encode()),
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--rate-hz", type=float, default=30.0)
    args = ap.parse_args()
    comm.create_comm = RecordingComm

    modes = {
        "coal+incr, live view": (True, True, True),
        "coal+incr, headless": (True, True, False),
        "coalesced only": (True, False, True),
        "incremental only": (False, True, True),
        "naive (guard off)": (False, False, True),
    }
    print(
        f"{args.tokens:,} tokens per stream, coalescing at {args.rate_hz:g} Hz; bytes = comm content JSON "
        "(kernel -> front end); text = UTF-8 bytes of the final text;\nB/msg over text = (bytes - text) / msgs, "
        "the per-message overhead; end = bytes of the last message"
    )
    header = (
        f"{'tok/s':>7} {'mode':<22} {'msgs':>7} {'bytes':>13} {'bytes/text':>10} "
        f"{'B/msg over text':>15} {'end bytes':>10} {'kernel CPU s':>12}"
    )
    for rate in (1_000, 5_000, 20_000):
        print()
        print(header)
        res = {
            name: run(args.tokens, rate, coalesce=c, incremental=i, rate_hz=args.rate_hz, live=lv)
            for name, (c, i, lv) in modes.items()
        }
        for name, r in res.items():
            print(
                f"{rate:>7,} {name:<22} {r['msgs']:>7,.0f} {r['bytes']:>13,.0f} {r['bytes'] / r['text']:>10.2f} "
                f"{(r['bytes'] - r['text']) / r['msgs']:>15,.0f} {r['end']:>10,.0f} {r['cpu_s']:>12.3f}"
            )
        best, headless, naive = (
            res["coal+incr, live view"],
            res["coal+incr, headless"],
            res["naive (guard off)"],
        )
        print(
            f"{'':>7} naive / coal+incr live: messages x{naive['msgs'] / best['msgs']:,.0f}, "
            f"bytes x{naive['bytes'] / best['bytes']:,.0f}, kernel CPU x{naive['cpu_s'] / max(best['cpu_s'], 1e-9):,.1f}; "
            f"headless / live bytes x{headless['bytes'] / best['bytes']:.2f}"
        )


if __name__ == "__main__":
    main()
