"""`StreamView`: live text of one or more LLM streams, side by side, with TTFT, tokens/s, tokens, cache.

Why it is built this way (measured with ipykernel 7 / ipywidgets 8 / JupyterLab 4):

* Assigning a synced trait re-sends the whole value, so `w.value += tok` per token is O(n^2) bytes, and
  one message per token overruns ZeroMQ's IOPub queue and jupyter_server's rate limit: messages get
  dropped and the notebook freezes. So, with `coalesce_ui` on, updates leave at most `rate_hz` times a
  second (the first at once), and with `incremental_render` on, only the new text crosses the wire as
  custom messages while streaming.
* Custom messages are not saved in the notebook, but the front end's model state is (JupyterLab saves
  the attributes of its widget models, not the kernel's traits). So when a front end has announced
  itself (`hello` from stream_view.js), an end (finish, fail, cancel) in delta mode is one small custom
  `end` message: the buffered tail, the final figures, and the final text's UTF-16 length + CRC-32. The
  front end, which applied every delta, checks its text against it, stores text and figures in its
  model's `_texts` / `_lanes` itself (so the saved notebook holds the exact text) and answers `ack`; the
  kernel then records the same values in its traits without echoing them. The text crosses the wire once.
  On a failed check the front end asks for a snapshot (which carries the check again); when no ack comes
  within `ack_grace_s` (front end gone, kernel busy), the kernel sends the full sync after all.
* With no front end known (nbclient, a script, a view not shown yet), an end is one full sync of `_texts`
  (lane -> text) and `_lanes` (lane metrics), as nbclient saves widget state from kernel messages only.
  Either way the end is the guaranteed trailing flush: whatever is still buffered is in it.
* Between pushes, a buffered tail is flushed by a `loop.call_later` timer when the pushing code runs on
  an asyncio loop (a kernel task, `aconsume`); a blocking loop on a thread without a running event loop
  gets its tail on the next push or at the end (finish/fail/cancel), never later than that.
* Both switches off is the honest naive widget (full `_texts` re-sent per token), with a guard: after
  `max_naive_updates` per-token updates in one stream, or in any 3 s across the widget (jupyter_server
  drops IOPub messages above 1,000/s averaged over 3 s), the lane switches to coalesced updates and says
  so in its status line. `max_naive_updates=None` disables the guard (benchmarks only).

The front end (stream_view.js) keeps each lane's live text in the model's `initialize` hook, so deltas
arriving before a view exists are not lost; a delta whose offset does not match asks for a snapshot.
Offsets and lengths are UTF-16 code units, what a JS string counts (an emoji is 2 of them).

What to send and when is decided by `workbench.view.ViewModel` (sans I/O, also run headless by
`workbench.view.view_cost` to measure the two switches in a bench); this widget adds the locking, the
flush timer, the front-end handshake and the sending, and sends exactly the messages the model returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from workbench._exceptions import CancelledError as WorkbenchCancelled
from workbench._types import Request, StreamEvent, StreamResult
from workbench.optimizations import Optimizations
from workbench.view.lane import LaneState, PendingEnd, StaticView, render_static, status_line
from workbench.view.model import DEFAULT_MAX_NAIVE_UPDATES, Message, ViewModel, check_lanes
from workbench.widgets._frontend_ends import FrontendEnds
from workbench.widgets._static import Displays, with_html

__all__ = ["DEFAULT_MAX_NAIVE_UPDATES", "StaticView", "StreamView"]


class StreamView(anywidget.AnyWidget, FrontendEnds):
    """Live text of one or more streams (lanes) side by side.

    `StreamView()` has one lane called "output"; `StreamView(lanes=["baseline", "optimized"])` shows an A/B.
    Feed it with `start` / `push` / `finish` (or `fail`, `cancel`), or hand it a client stream with
    `consume(stream)` / `await aconsume(stream)` / `await arun(client, request)`.
    """

    _esm = Path(__file__).with_name("stream_view.js")
    _css = Path(__file__).with_name("stream_view.css")

    # Python -> JS only. `_texts` holds finished text (and, in the naive mode, the live text);
    # `_lanes` the per-lane figures and status. Both are saved with the notebook.
    _lanes = traitlets.List(traitlets.Dict()).tag(sync=True)
    _texts = traitlets.Dict().tag(sync=True)
    # Keys the front end's per-model text store (anywidget hands each hook a different model proxy).
    _uid = traitlets.Unicode().tag(sync=True)

    def __init__(
        self,
        lanes: Sequence[str] = ("output",),
        *,
        optimizations: Optimizations | None = None,
        coalesce_ui: bool | None = None,
        incremental_render: bool | None = None,
        rate_hz: float = 30.0,
        max_naive_updates: int | None = DEFAULT_MAX_NAIVE_UPDATES,
        ack_grace_s: float = 1.0,
        clock: Callable[[], int] = time.perf_counter_ns,
        **kwargs: Any,
    ) -> None:
        """`coalesce_ui` / `incremental_render` default to on, or to `optimizations`' values when given.

        `ack_grace_s`: how long a live front end has to confirm an end before the full sync goes anyway.
        """
        if ack_grace_s < 0:
            raise ValueError(f"ack_grace_s must be >= 0, got {ack_grace_s!r}")
        names = check_lanes(lanes)
        self._vm = ViewModel(names, rate_hz=rate_hz, max_naive_updates=max_naive_updates)
        self._lock = threading.RLock()
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._handle: Any = None
        self._staged_sync: Message | None = None
        self._displays = Displays()
        if optimizations is not None:
            self.configure(optimizations)
        if coalesce_ui is not None:
            self.coalesce_ui = coalesce_ui
        if incremental_render is not None:
            self.incremental_render = incremental_render
        self.ack_grace_s = float(ack_grace_s)
        # Set by the first message from a front end (stream_view.js says `hello` when its model starts);
        # the loop is the one that message arrived on (the kernel's), which times the grace for acks.
        self._frontend_seen = False
        self._frontend_loop: asyncio.AbstractEventLoop | None = None
        self._pending_ends: dict[str, PendingEnd] = {}
        #: Full syncs sent because a front end did not confirm an end within `ack_grace_s`.
        self.fallback_syncs = 0
        # Initial state goes into the comm_open message itself, not into updates right after it.
        super().__init__(
            _uid=uuid.uuid4().hex,
            _lanes=[ln.meta(self._vm.mode()) for ln in self._vm.lanes.values()],
            _texts={n: "" for n in names},
            **kwargs,
        )
        self.on_msg(self._on_front_msg)

    # ---- configuration (the switches live in the view model) ----

    @property
    def coalesce_ui(self) -> bool:
        return self._vm.coalesce

    @coalesce_ui.setter
    def coalesce_ui(self, on: bool) -> None:
        self._vm.coalesce = bool(on)

    @property
    def incremental_render(self) -> bool:
        return self._vm.incremental

    @incremental_render.setter
    def incremental_render(self, on: bool) -> None:
        self._vm.incremental = bool(on)

    @property
    def rate_hz(self) -> float:
        return self._vm.rate_hz

    @rate_hz.setter
    def rate_hz(self, hz: float) -> None:
        if hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {hz!r}")
        self._vm.rate_hz = float(hz)

    @property
    def max_naive_updates(self) -> int | None:
        return self._vm.max_naive_updates

    @max_naive_updates.setter
    def max_naive_updates(self, n: int | None) -> None:
        self._vm.max_naive_updates = n

    @property
    def flushes(self) -> int:
        """Messages this widget sent while streaming (custom + state), for the curious and the tests."""
        return self._vm.flushes

    @property
    def _state(self) -> dict[str, LaneState]:
        return self._vm.lanes

    def configure(self, optimizations: Optimizations) -> None:
        """Take `coalesce_ui` and `incremental_render` from an `Optimizations` value."""
        self.coalesce_ui = optimizations.coalesce_ui
        self.incremental_render = optimizations.incremental_render

    @property
    def lanes(self) -> list[str]:
        return list(self._state)

    def set_lanes(self, lanes: Sequence[str]) -> None:
        """Replace the lanes (texts are cleared). Ongoing streams on removed lanes are cancelled."""
        names = check_lanes(lanes)
        with self._lock:
            for name, lane in list(self._state.items()):
                if name not in names and lane.status == "streaming":
                    self.cancel(name)
            self._vm.lanes = {n: self._state.get(n) or LaneState(n) for n in names}
            self._vm.texts = {n: self._state[n].text for n in names}
            self._vm.metas = [self._state[n].meta(self._mode(self._state[n])) for n in names]
            with self.hold_sync():
                self._texts = self._vm.texts
                self._lanes = self._vm.metas

    @property
    def interval_ns(self) -> int:
        return self._vm.interval_ns

    @property
    def frontend_live(self) -> bool:
        """A live front end (stream_view.js) has spoken to this widget: it shows it and saves its state."""
        return self._frontend_seen

    def text(self, lane: str | None = None) -> str:
        """The text received so far on a lane (exact once the stream ended)."""
        with self._lock:
            return self._lane(lane).text

    def figures(self, lane: str | None = None) -> dict[str, Any]:
        """Status and metrics of a lane as the widget shows them."""
        with self._lock:
            ln = self._lane(lane)
            return ln.meta(self._mode(ln))

    # ---- the streaming API ----

    def start(
        self,
        lane: str | None = None,
        *,
        request: Request | None = None,
        cache: str | None = None,
        t_ns: int | None = None,
        live_ttft: bool = True,
    ) -> None:
        """Begin a new stream on `lane` (clears its text).

        `t_ns` is the send stamp live TTFT is measured from (default: now). Pass `live_ttft=False` when the
        stream started earlier than this call (e.g. started from its first event): TTFT then shows once
        `finish(lane, result)` brings the measured figure.
        """
        with self._lock:
            name = lane if lane is not None else self.lanes[0]
            msgs = self._vm.start(
                name,
                self._clock(),
                start_ns=t_ns,
                live_ttft=live_ttft,
                model=request.model if request is not None else "",
                request_id=request.id if request is not None else "",
                cache=cache or "",
            )
            self._emit(msgs)

    def push(self, lane: str | None, event: StreamEvent | str) -> None:
        """Add one stream event (or a plain text piece). Updates leave according to the switches.

        A lane that never streamed starts on its first push; events after the lane ended are ignored
        (a stream cancelled by Stop may still deliver a chunk that was already in flight).
        """
        with self._lock:
            msgs = self._vm.on_event(lane, event, self._clock())
            if not msgs:
                if self._timer is None:
                    self._arm_timer()
            else:
                self._emit(msgs)
                if self._timer is None and self._vm.dirty():  # e.g. started by this push, tail buffered
                    self._arm_timer()

    def finish(self, lane: str | None = None, result: StreamResult | None = None) -> None:
        """End a stream: one full sync carries the exact final text and the final figures."""
        with self._lock:
            ln = self._lane(lane)
            if result is not None:
                ln.take_result(result)
                ln.status = {"ok": "done"}.get(result.status, result.status)
            else:
                ln.status = "done"
            self._end(ln)

    def fail(self, lane: str | None, error: BaseException | str) -> None:
        """End a stream with an error; the text received so far stays, the error shows in the status line."""
        with self._lock:
            ln = self._lane(lane)
            partial = getattr(error, "result", None)
            if isinstance(partial, StreamResult):
                ln.take_result(partial)
            if isinstance(error, BaseException):
                kind = getattr(error, "kind", type(error).__name__)
                ln.error = f"{kind}: {error}"
            else:
                ln.error = error
            ln.status = "error"
            self._end(ln)

    def cancel(self, lane: str | None = None) -> None:
        """Stop a stream: cancels the client stream being consumed (if any) and syncs what arrived."""
        with self._lock:
            ln = self._lane(lane)
            stream = ln.stream
            if ln.status == "streaming":
                ln.status = "cancelled"
                self._end(ln)
        if stream is not None and hasattr(stream, "cancel"):
            stream.cancel()

    def cancel_all(self) -> None:
        for name in self.lanes:
            self.cancel(name)

    def consume(self, stream: Iterable[StreamEvent], lane: str | None = None) -> StreamResult | None:
        """Show a (sync) client stream to its end; returns `stream.result`. Errors end the lane and re-raise.

        A loop that blocks the cell cannot receive a Stop click; in a notebook prefer `await aconsume(...)`.
        """
        name = self._begin_consume(stream, lane)
        try:
            for ev in stream:
                self.push(name, ev)
        except WorkbenchCancelled:
            self.cancel(name)
            raise
        except BaseException as exc:  # KeyboardInterrupt too: the lane must not stay "streaming"
            self._end_with(name, exc)
            raise
        return self._end_consume(name, stream)

    async def aconsume(
        self, stream: AsyncIterable[StreamEvent], lane: str | None = None
    ) -> StreamResult | None:
        """Show an async client stream to its end without blocking the kernel; returns `stream.result`."""
        name = self._begin_consume(stream, lane)
        try:
            async for ev in stream:
                self.push(name, ev)
        except (WorkbenchCancelled, asyncio.CancelledError):
            self.cancel(name)
            raise
        except BaseException as exc:
            self._end_with(name, exc)
            raise
        return self._end_consume(name, stream)

    async def arun(self, client: Any, request: Request, lane: str | None = None) -> StreamResult | None:
        """`async with client.stream(request)` into a lane; returns the result (errors re-raise)."""
        name = lane if lane is not None else self.lanes[0]
        self.start(name, request=request)
        async with client.stream(request) as s:
            return await self.aconsume(s, name)

    # ---- static fallback ----

    def static(self) -> StaticView:
        """Final texts + figures as Markdown/HTML for exported notebooks (the widget needs a live kernel)."""
        with self._lock:
            return render_static([(ln, ln.meta(self._mode(ln))) for ln in self._state.values()])

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        """The live widget plus `text/html` of the texts and figures, for exported notebooks."""
        with self._lock:
            lines = "; ".join(
                f"{ln.name}: {status_line(ln.meta(self._mode(ln)))}" for ln in self._state.values()
            )
        bundle = super()._repr_mimebundle_(**kwargs)
        metadata = bundle[1] if isinstance(bundle, tuple) else {}
        return with_html(bundle, self.static().html, f"StreamView({lines})"), metadata

    def _bundle(self) -> dict[str, Any]:
        bundle = self._repr_mimebundle_() if self.comm is not None else None  # closed: no live widget
        return bundle[0] if bundle is not None else {"text/html": self.static().html}

    def _ipython_display_(self) -> None:
        # Displayed under an id, so the output's static part can be brought up to date after a stream
        # when no live front end shows it (nbclient, `workbench report`); see workbench.widgets._static.
        self._displays.show(self._bundle())

    def show(self) -> Any:
        """Display the widget with a display id; `freeze()` later swaps it for the static fallback."""
        self._handle = self._displays.show(self._bundle())
        return self._handle

    def freeze(self) -> None:
        """Replace the displayed widget with `static()` so exported HTML shows the final texts offline."""
        if self._handle is None:
            raise RuntimeError("call show() first: freeze() replaces the output show() created")
        if self._handle in self._displays.handles:  # frozen: later ends must not bring the widget back
            self._displays.handles.remove(self._handle)
        self._handle.update(self.static())

    # ---- internals ----

    def _lane(self, lane: str | None) -> LaneState:
        name = lane if lane is not None else next(iter(self._state))
        try:
            return self._state[name]
        except KeyError:
            raise KeyError(f"no lane {name!r}; lanes are {self.lanes}") from None

    def _mode(self, ln: LaneState) -> str:
        return self._vm.mode()

    def _emit(self, msgs: list[Message]) -> None:
        """Send what the view model decided: custom messages as they are, state syncs via the traits."""
        for m in msgs:
            if m["method"] == "custom":
                self._send_custom(m["content"])
            else:
                # Through `_sync_all`, the one place every full sync goes (a test or a user may wrap it).
                self._staged_sync = m
                self._sync_all()
        if self._timer is not None and self._vm.due_ns() is None:
            self._cancel_timer()

    def _apply_sync(self, msg: Message) -> None:
        # Setting both traits in one hold_sync sends this very state as one `update` message.
        # The model's full values: traitlets sends the ones that changed, which is what `msg` carries.
        with self.hold_sync():
            self._texts = self._vm.texts
            self._lanes = self._vm.metas
        # This sync carried every pending end's final values to both sides: nothing is left to confirm
        # (so an ack that comes later must not record anything: the sync may have moved on since).
        for p in self._pending_ends.values():
            p.cancel()
        self._pending_ends.clear()

    def _arm_timer(self) -> None:
        # A buffered tail leaves when its window closes: on the running loop's timer, or (no loop on this
        # thread) with the next push or the end of the stream, never later than that.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        due = self._vm.due_ns()
        if due is None or self._timer is not None:
            return
        self._timer = loop.call_later(max(0, due - self._clock()) / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._vm.dirty():
                self._emit(self._vm.flush(self._clock()))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sync_all(self) -> None:
        """Send a full state sync: the one the view model just returned, or a fresh one."""
        msg, self._staged_sync = self._staged_sync, None
        self._apply_sync(msg if msg is not None else self._vm.sync())

    def _end(self, ln: LaneState) -> None:
        loop = self._grace_loop() if self._mode(ln) == "delta" else None
        msgs = self._vm.end(ln.name, live=loop is not None)
        if loop is not None:
            self._send_end(ln, msgs[0]["content"], loop)
        else:
            self._emit(msgs)
        if not self._vm.dirty():
            self._cancel_timer()
        idle = all(o.status != "streaming" for o in self._state.values())
        if idle and not self._frontend_seen and self.comm is not None:
            self._displays.refresh(self._bundle)

    def _begin_consume(self, stream: object, lane: str | None) -> str:
        with self._lock:
            name = lane if lane is not None else self.lanes[0]
            ln = self._state.get(name)
            req = getattr(stream, "request", None)
            same = isinstance(req, Request) and ln is not None and req.id == ln.request_id
            if ln is not None and ln.status == "cancelled" and same:
                # Stopped between start() and the first event: stop the stream, keep the lane as it is.
                cancel = getattr(stream, "cancel", None)
                if cancel is not None:
                    cancel()
            elif ln is None or ln.status != "streaming":
                self.start(name, request=req if isinstance(req, Request) else None)
            self._state[name].stream = stream
            return name

    def _end_consume(self, name: str, stream: object) -> StreamResult | None:
        result = getattr(stream, "result", None)
        res = result if isinstance(result, StreamResult) else None
        with self._lock:
            if self._state[name].status == "streaming":
                if res is not None and res.status == "cancelled":
                    self._state[name].status = "cancelled"
                    self._state[name].take_result(res)
                    self._end(self._state[name])
                else:
                    self.finish(name, res)
        return res

    def _end_with(self, name: str, exc: BaseException) -> None:
        with self._lock:
            if self._state[name].status == "streaming":
                if isinstance(exc, KeyboardInterrupt | GeneratorExit):
                    self.cancel(name)
                else:
                    self.fail(name, exc)
