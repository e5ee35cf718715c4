"""What a stream costs the front end: messages, JSON bytes and the kernel CPU spent producing them.

`coalesce_ui` and `incremental_render` act in the view, not on the wire to the model server, so a bench run
(no notebook) measures them here: the stream's own arrival stamps drive the same `ViewModel` the widget
uses, and every message it returns is serialised as the kernel would (JSON, UTF-8). The timeline is the
real one: a buffered tail leaves when its coalescing window closes (the widget's timer), not at the next
chunk. CPU is the thread time of the view's decisions plus the serialisation, what the kernel pays per stream.

    row.update(view_columns(result, coalesce=parts.view.coalesce, incremental=parts.view.incremental))
    # adds ui_messages (int), ui_bytes (int) and ui_cpu_ms (float) to a bench row
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from workbench._types import StreamEvent, StreamResult, TextDelta
from workbench.view.model import DEFAULT_MAX_NAIVE_UPDATES, Message, ViewModel

__all__ = ["UI_COLUMNS", "message_bytes", "view_columns", "view_cost"]

#: The columns `view_columns` adds to a result's row (bench frame).
UI_COLUMNS: tuple[str, ...] = ("ui_messages", "ui_bytes", "ui_cpu_ms")


def message_bytes(msg: Message) -> int:
    """UTF-8 bytes of a message's JSON (compact, non-ASCII kept as is: the comm `data` on the wire)."""
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode())


def view_cost(
    events: Iterable[StreamEvent],
    *,
    coalesce: bool,
    incremental: bool,
    start_ns: int | None = None,
    end_ns: int | None = None,
    result: StreamResult | None = None,
    rate_hz: float = 30.0,
    max_naive_updates: int | None = DEFAULT_MAX_NAIVE_UPDATES,
    live: bool = True,
) -> dict[str, Any]:
    """Replay one stream's stamped events through a `ViewModel`; returns ui_messages, ui_bytes, ui_cpu_ms.

    `events` carry their arrival stamps (`TextDelta.t_ns`, ...). `start_ns`: the send stamp (default: the
    first event's stamp); `end_ns`: when the stream ended (default: the last stamp). `result`, when given,
    ends the lane as `StreamView.finish(result)` does (its text and figures are authoritative). `live`: a
    front end is showing the view and acks ends (the notebook case); False is nbclient / a script, where
    every end is a full state sync. The count includes the start and the end messages.
    """
    evs = list(events)
    stamps = [int(getattr(e, "t_ns", 0)) for e in evs]
    t0 = start_ns if start_ns is not None else (stamps[0] if stamps else 0)
    t_end = end_ns if end_ns is not None else (stamps[-1] if stamps else t0)
    msgs = 0
    nbytes = 0
    cpu0 = time.thread_time_ns()
    vm = ViewModel(
        ["output"],
        coalesce=coalesce,
        incremental=incremental,
        rate_hz=rate_hz,
        max_naive_updates=max_naive_updates,
    )

    def send(out: list[Message]) -> None:
        nonlocal msgs, nbytes
        for m in out:
            msgs += 1
            nbytes += message_bytes(m)

    def timer_until(t: int) -> None:
        # The widget's timer flushes a buffered tail when the window closes, if that is before `t`.
        due = vm.due_ns()
        if due is not None and due <= t:
            send(vm.flush(max(due, 0)))

    request = result.request if result is not None else None
    send(
        vm.start(
            "output",
            t0,
            start_ns=t0,
            model=request.model if request is not None else "",
            request_id=request.id if request is not None else "",
        )
    )
    for ev, t in zip(evs, stamps, strict=True):
        now = max(t, t0)
        timer_until(now)
        send(vm.on_event("output", ev, now))
    timer_until(max(t_end, t0))
    ln = vm.lane("output")
    if result is not None:
        ln.take_result(result)
        ln.status = {"ok": "done"}.get(result.status, result.status)
    else:
        ln.status = "done"
    end = vm.end("output", live=live)
    send(end)
    if live and vm.pending_texts:  # the front end's ack: recorded in the kernel, nothing sent
        vm.acked("output", ln.text, end[0]["content"]["meta"])
    cpu_ns = time.thread_time_ns() - cpu0
    return {"ui_messages": msgs, "ui_bytes": nbytes, "ui_cpu_ms": cpu_ns / 1e6}


def view_columns(
    result: StreamResult, *, coalesce: bool, incremental: bool, rate_hz: float = 30.0
) -> dict[str, Any]:
    """`view_cost` of a finished `StreamResult` (its answer-text chunks and stamps), for a bench row.

    Call once per result with the variant's `Parts.view` switches:
    `row.update(view_columns(result, coalesce=parts.view.coalesce, incremental=parts.view.incremental))`.
    A cache hit costs what its replay would cost the view (its chunks, as they were delivered).
    """
    events = [TextDelta(c.text, c.t_ns) for c in result.chunks if c.text]
    return view_cost(
        events,
        coalesce=coalesce,
        incremental=incremental,
        start_ns=result.sent_ns,
        end_ns=result.end_ns or None,
        result=result,
        rate_hz=rate_hz,
    )
