"""`ViewModel`: what a stream view sends to its front end, decided without any I/O.

`StreamView` (the widget) keeps one and sends exactly the messages it returns; `workbench.view.cost` drives
one headless over a finished stream's stamped chunks to measure what `coalesce_ui` and `incremental_render`
cost or save. The reasons for the two switches, the end handshake and the naive guard are in
`workbench.widgets.stream_view`.

A message is the `data` of a Jupyter widget comm message, as the front end receives it:

* `{"method": "custom", "content": {...}}`: a custom message (start, delta `d`, end);
* `{"method": "update", "state": {"_texts": {...}, "_lanes": [...]}, "buffer_paths": []}`: a state sync of
  both synced traits (the widget applies it by setting its traits, which sends this same message).

Time is passed in (`now_ns`), never read here: the widget passes its clock, the headless cost the chunks'
arrival stamps, so both take the same decisions for the same timeline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from workbench._types import DoneEvent, StreamEvent, TextDelta, UsageEvent
from workbench.view.lane import LaneState, fingerprint, live_meta, replace_meta, utf16_len

__all__ = ["DEFAULT_MAX_NAIVE_UPDATES", "Message", "ViewModel", "check_lanes"]

Message = dict[str, Any]

# A few thousand per-token updates is where JupyterLab starts dropping IOPub messages.
DEFAULT_MAX_NAIVE_UPDATES = 2000
# jupyter_server's IOPub rate limit averages over 3 s (1,000 msgs/s there).
_RATE_WINDOW_NS = 3_000_000_000


def custom(content: dict[str, Any]) -> Message:
    return {"method": "custom", "content": content}


class ViewModel:
    """Lanes' state plus the send decisions: coalescing window, deltas vs full state, the naive guard.

    `coalesce`: at most `rate_hz` updates a second (the first at once; a buffered tail leaves with the
    next due flush, see `due_ns`). `incremental`: only new text crosses as custom messages while streaming,
    else the whole `_texts` is re-synced. `max_naive_updates`: with coalescing off, per-token updates stop
    after this many (per stream, or per 3 s across lanes) and the lane coalesces; None: no guard.
    """

    def __init__(
        self,
        lanes: Sequence[str] = ("output",),
        *,
        coalesce: bool = True,
        incremental: bool = True,
        rate_hz: float = 30.0,
        max_naive_updates: int | None = DEFAULT_MAX_NAIVE_UPDATES,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        names = check_lanes(lanes)
        self.lanes: dict[str, LaneState] = {n: LaneState(n) for n in names}
        self.coalesce = coalesce
        self.incremental = incremental
        self.rate_hz = float(rate_hz)
        self.max_naive_updates = max_naive_updates
        self.last_flush_ns: int | None = None
        self.naive_stamps: deque[int] = deque()
        #: The `_texts` value the front end holds after the last state sync (or ack).
        self.texts: dict[str, str] = {n: "" for n in names}
        #: The `_lanes` value (every lane's figures) the front end holds after the last sync (or ack).
        self.metas: list[dict[str, Any]] = [ln.meta(self.mode()) for ln in self.lanes.values()]
        #: Final texts of ends sent as custom messages and not yet confirmed (lane -> text). A state sync
        #: while a restarted lane streams keeps showing that text; any sync settles them all.
        self.pending_texts: dict[str, str] = {}
        #: Messages sent while streaming (deltas or per-push syncs), for the curious and the tests.
        self.flushes = 0

    # ---- queries ----

    @property
    def interval_ns(self) -> int:
        return int(1e9 / self.rate_hz)

    def mode(self) -> str:
        return "delta" if self.incremental else "state"

    def coalescing(self, ln: LaneState) -> bool:
        return self.coalesce or ln.forced_coalesce

    def dirty(self) -> bool:
        for ln in self.lanes.values():  # a loop, not any(genexpr): this runs per token in naive mode
            if ln.dirty:
                return True
        return False

    def due_ns(self) -> int | None:
        """When the buffered tail must leave (None: nothing buffered on a streaming lane)."""
        if not any(ln.dirty and ln.status == "streaming" for ln in self.lanes.values()):
            return None
        if self.last_flush_ns is None:
            return 0
        return self.last_flush_ns + self.interval_ns

    def lane(self, name: str | None) -> LaneState:
        key = name if name is not None else next(iter(self.lanes))
        try:
            return self.lanes[key]
        except KeyError:
            raise KeyError(f"no lane {key!r}; lanes are {list(self.lanes)}") from None

    # ---- events ----

    def start(
        self,
        name: str,
        now_ns: int,
        *,
        start_ns: int | None = None,
        live_ttft: bool = True,
        model: str = "",
        request_id: str = "",
        cache: str = "",
    ) -> list[Message]:
        """Begin a new stream on `name` (clears its text); `start_ns`: the send stamp TTFT counts from."""
        if name not in self.lanes:
            self.lanes[name] = LaneState(name)
        ln = self.lanes[name]
        ln.reset()
        ln.start_ns = start_ns if start_ns is not None else now_ns
        ln.live_ttft = live_ttft
        ln.model, ln.request_id, ln.cache = model, request_id, cache
        ln.version += 1
        # The start message counts as a flush: the rate limit holds from the very first message.
        self.last_flush_ns = now_ns
        if self.mode() == "delta":
            return [custom({"t": "start", "lane": name, "meta": ln.meta("delta")})]
        return self._syncs()

    def on_event(self, name: str | None, event: StreamEvent | str, now_ns: int) -> list[Message]:
        """One stream event (or a plain text piece) on a lane; returns what leaves now.

        A lane that never streamed starts here; events after the lane ended are ignored (a stream
        cancelled by Stop may still deliver a chunk that was already in flight).
        """
        ln = self.lane(name)
        out: list[Message] | None = None  # (the per-token path allocates no list of its own)
        if ln.status == "idle":
            out = self.start(ln.name, now_ns)
        elif ln.status != "streaming":
            return []
        if isinstance(event, str):
            event = TextDelta(event, now_ns)
        if isinstance(event, TextDelta):
            if not event.text:
                return out or []
            t = event.t_ns or now_ns
            if ln.first_ns is None:
                ln.first_ns = t
            ln.last_ns = t
            ln.tokens += 1
            ln.parts.append(event.text)
            ln.pending.append(event.text)
            ln.length += len(event.text)
        elif isinstance(event, UsageEvent):
            if event.usage.completion_tokens is not None:
                ln.usage_tokens = event.usage.completion_tokens
        elif isinstance(event, DoneEvent):
            ln.finish_reason = event.finish_reason
        ln.live_figures()
        ln.version += 1
        ln.dirty = True
        if self.coalesce or ln.forced_coalesce:
            # This lane is dirty and streaming, so a flush is due once the window since the last closed
            # (the per-token path: kept free of a scan over the lanes).
            last = self.last_flush_ns
            sent = self.flush(now_ns) if last is None or now_ns - last >= self.interval_ns else []
        else:
            ln.per_token_updates += 1
            if self._guard_trips(ln, now_ns):
                ln.forced_coalesce = True
                ln.note = (
                    f"coalesce_ui is off: per-token updates stopped after {self.max_naive_updates:,} "
                    f"so the notebook stays responsive; now updating at {self.rate_hz:g} Hz"
                )
                sent = self.poll(now_ns)
            else:
                sent = self.flush(now_ns)
        return sent if out is None else out + sent

    def poll(self, now_ns: int) -> list[Message]:
        """Flush if a flush is due at `now_ns` (what the widget's timer, or the next push, does)."""
        due = self.due_ns()
        if due is None or now_ns < due:
            return []
        return self.flush(now_ns)

    def flush(self, now_ns: int) -> list[Message]:
        """Send what changed on every dirty streaming lane, in one message."""
        dirty = [ln for ln in self.lanes.values() if ln.dirty and ln.status == "streaming"]
        if not dirty:
            return []
        self.last_flush_ns = now_ns
        self.flushes += 1
        if not self.incremental:
            for ln in dirty:
                ln.pending.clear()
                ln.sent = ln.length
                ln.dirty = False
            return self._syncs()
        lanes: dict[str, Any] = {}
        for ln in dirty:
            delta = "".join(ln.pending)
            ln.pending.clear()
            lanes[ln.name] = {"seq": ln.seq, "at": ln.sent16, "s": delta, "m": live_meta(ln)}
            ln.sent += len(delta)
            ln.sent16 += utf16_len(delta)
            ln.dirty = False
        return [custom({"t": "d", "lanes": lanes})]

    def end(self, name: str, *, live: bool) -> list[Message]:
        """The end of a lane's stream (its status and result already set on the lane).

        `live`: a front end that answers acks is known; in delta mode the end is then one small custom
        `end` (tail, final figures, UTF-16 length + CRC-32 of the text), else one full state sync.
        """
        ln = self.lane(name)
        ln.stream = None
        ln.version += 1
        if live and self.mode() == "delta":
            text = ln.text
            n16, crc = fingerprint(text)
            at, tail = ln.sent16, text[ln.sent :]
            meta = ln.meta("delta")
            ln.pending.clear()
            ln.sent, ln.sent16 = ln.length, n16
            ln.dirty = False
            self.pending_texts[name] = text
            msg = {"t": "end", "lane": name, "seq": ln.seq, "at": at, "s": tail, "n": n16, "h": crc}
            return [custom({**msg, "meta": meta})]
        ln.pending.clear()
        ln.sent, ln.sent16 = ln.length, utf16_len(ln.text)
        ln.dirty = False
        return self._syncs()

    def acked(self, name: str, text: str, meta: dict[str, Any]) -> None:
        """A front end confirmed an end: it now holds `text` and `meta` as the lane's synced values."""
        self.pending_texts.pop(name, None)
        self.texts = {**self.texts, name: text}
        self.metas = replace_meta(self.metas, meta)

    def sync(self) -> Message:
        """A full state sync: ended (or state-mode) lanes' texts, every lane's figures.

        Like ipywidgets, the message carries only the traits whose value changed since the last sync
        (its `state` may be empty: then nothing is sent). `texts` / `metas` hold the full values.
        """
        texts = dict(self.texts)
        for ln in self.lanes.values():
            if ln.status != "streaming" or self.mode() == "state":
                texts[ln.name] = ln.text
            elif ln.name in self.pending_texts:  # restarted before the ack: the previous final text
                texts[ln.name] = self.pending_texts[ln.name]
        # The sync carries every pending end's final values to both sides: nothing is left to confirm.
        self.pending_texts.clear()
        lanes = [ln.meta(self.mode()) for ln in self.lanes.values()]
        state: dict[str, Any] = {}
        if texts != self.texts:
            state["_texts"] = texts
        if lanes != self.metas:
            state["_lanes"] = lanes
        self.texts, self.metas = texts, lanes
        return {"method": "update", "state": state, "buffer_paths": []}

    def _syncs(self) -> list[Message]:
        msg = self.sync()
        return [msg] if msg["state"] else []

    # ---- internals ----

    def _guard_trips(self, ln: LaneState, now_ns: int) -> bool:
        # Per stream, and across lanes within jupyter_server's 3 s rate window: several naive lanes, or
        # naive streams back to back, must not add up past the server's limit.
        if self.max_naive_updates is None:
            return False
        recent = self.naive_stamps
        recent.append(now_ns)
        while recent and recent[0] < now_ns - _RATE_WINDOW_NS:
            recent.popleft()
        return ln.per_token_updates > self.max_naive_updates or len(recent) > self.max_naive_updates


def check_lanes(lanes: Sequence[str]) -> list[str]:
    names = list(lanes)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"lanes must be distinct names, got {names!r}")
    return names
