"""How a `StreamView` and its live front end (stream_view.js) settle a lane's end, as a mixin of `StreamView`.

In delta mode an end is one custom `end` message (tail, final figures, UTF-16 length + CRC-32 of the text);
the front end checks its text, stores it in its model and answers `ack`, and the kernel records the same
values without echoing them. No ack within `ack_grace_s` sends the full sync after all; a failed check
makes the front end ask for a snapshot (`resync`). The reasons are in `workbench.widgets.stream_view`.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from workbench.view.lane import LaneState, PendingEnd, replace_meta, utf16_len
from workbench.view.model import ViewModel

__all__ = ["FrontendEnds"]


class FrontendEnds:
    """The end handshake with a live front end. `StreamView` owns the state named below."""

    _lock: threading.RLock
    _vm: ViewModel
    _pending_ends: dict[str, PendingEnd]
    _frontend_seen: bool
    _frontend_loop: asyncio.AbstractEventLoop | None
    _texts: dict[str, str]
    _lanes: list[dict[str, Any]]
    ack_grace_s: float
    fallback_syncs: int
    comm: Any

    if TYPE_CHECKING:  # StreamView's (and anywidget's) methods this mixin calls

        @property
        def _state(self) -> dict[str, LaneState]: ...
        def _sync_all(self) -> None: ...
        def _mode(self, ln: LaneState) -> str: ...
        def send(self, content: dict[str, Any], buffers: Any = None) -> None: ...
        def _lock_property(self, **kwargs: Any) -> AbstractContextManager[None]: ...

    def _grace_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop that times an end's ack; None when no live front end is known or nothing can time it."""
        if not self._frontend_seen or self.comm is None:
            return None
        # The kernel's loop first: acks arrive there, and it outlives a worker thread's own loop.
        loop = self._frontend_loop
        if loop is not None and loop.is_running():
            return loop
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _send_end(self, ln: LaneState, end: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        """Send a delta lane's `end` (the view model's: tail + final figures + check) and await its ack."""
        old = self._pending_ends.pop(ln.name, None)
        if old is not None:
            old.cancel()
        p = PendingEnd(ln.name, end["seq"], end["n"], end["h"], ln.text, end["meta"])
        self._pending_ends[ln.name] = p  # before sending: a front end may answer before send() returns
        self._send_custom(end)
        self._arm_grace(loop, p)

    def _arm_grace(self, loop: asyncio.AbstractEventLoop, p: PendingEnd) -> None:
        def arm() -> None:
            with self._lock:
                if self._pending_ends.get(p.lane) is p and p.handle is None:
                    p.handle = loop.call_later(self.ack_grace_s, self._on_grace, p)

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            arm()
        else:  # ended on another thread: the timer must live on the kernel's loop
            loop.call_soon_threadsafe(arm)

    def _on_grace(self, p: PendingEnd) -> None:
        with self._lock:
            if self._pending_ends.get(p.lane) is not p or self.comm is None:
                return
            p.handle = None
            self.fallback_syncs += 1
            self._sync_all()

    def _on_ack(self, content: dict[str, Any]) -> None:
        p = self._pending_ends.get(content.get("lane", ""))
        if p is None or content.get("seq") != p.seq or content.get("h") != p.crc:
            return  # a second view's ack, or one for an end a full sync already settled
        del self._pending_ends[p.lane]
        p.cancel()
        self._vm.acked(p.lane, p.text, p.meta)
        # The front end stored these values in its model itself; record them here without echoing them
        # back (ipywidgets' property lock is how it takes a front end's `update` without an echo, too).
        texts = {**self._texts, p.lane: p.text}
        lanes = replace_meta(list(self._lanes), p.meta)
        with self._lock_property(_texts=texts, _lanes=lanes):
            self._texts = texts
            self._lanes = lanes

    def _send_custom(self, content: dict[str, Any]) -> None:
        self.send(content)

    def _on_front_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("t") not in ("hello", "ack", "resync"):
            return
        with self._lock:
            self._frontend_seen = True
            try:
                self._frontend_loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            if content["t"] == "ack":
                self._on_ack(content)
            elif content["t"] == "resync":
                self._on_resync(content.get("lane"))

    def _on_resync(self, name: Any) -> None:
        # The front end asks for a snapshot when a delta's offset, or an end's check, shows it missed
        # something (a view that attached late, a dropped message). The text so far puts it back in step;
        # for an end still waiting for its ack, the snapshot carries the check so the front end can ack.
        if name not in self._state:
            return
        ln = self._state[name]
        text = ln.text
        ln.pending.clear()
        ln.sent, ln.sent16 = ln.length, utf16_len(text)
        ln.dirty = False
        snap: dict[str, Any] = {
            "t": "snap",
            "lane": name,
            "seq": ln.seq,
            "text": text,
            "meta": ln.meta(self._mode(ln)),
        }
        p = self._pending_ends.get(name)
        if ln.status != "streaming" and p is not None and p.seq == ln.seq:
            snap["meta"], snap["n"], snap["h"] = p.meta, p.n16, p.crc
        self._send_custom(snap)
