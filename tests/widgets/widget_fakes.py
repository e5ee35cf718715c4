"""Widget test doubles: a recording comm (every message with its JSON size, no kernel), a Python stand-in for
stream_view.js's model side (so the end/ack protocol can be tested without a browser), and a manual clock."""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):  # type: ignore[misc]
    """Records what the kernel would publish on IOPub for this comm (msg_type, data, bytes)."""

    log: list[tuple[str, dict[str, Any], int]]
    listeners: list[Callable[[dict[str, Any]], None]]

    def __init__(self, **kwargs: Any) -> None:
        self.log = []
        self.listeners = []
        super().__init__(**kwargs)

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        # The content ipykernel would publish: {"data": ..., "comm_id": ...} (header and signature not counted).
        content = {"data": data or {}, "comm_id": self.comm_id, **keys}
        payload = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
        self.log.append((msg_type, content, len(payload) + sum(len(b) for b in buffers or ())))
        if msg_type == "comm_msg":
            for listener in list(self.listeners):
                listener(json.loads(payload)["data"])  # a copy, as a front end gets it off the wire

    # ---- views on the log ----
    def widget_msgs(self) -> list[tuple[str, dict[str, Any], int]]:
        """comm_msg entries only (what a stream costs after the widget was created)."""
        return [e for e in self.log if e[0] == "comm_msg"]

    def custom(self) -> list[dict[str, Any]]:
        return [d["data"]["content"] for _, d, _ in self.widget_msgs() if d["data"]["method"] == "custom"]

    def updates(self) -> list[dict[str, Any]]:
        return [d["data"]["state"] for _, d, _ in self.widget_msgs() if d["data"]["method"] == "update"]

    def bytes(self) -> int:
        return sum(n for _, _, n in self.widget_msgs())

    def clear(self) -> None:
        self.log.clear()


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordingComm]]:
    """Every widget created in the test gets a RecordingComm; the list holds them in creation order."""
    made: list[RecordingComm] = []

    def create(*args: Any, **kwargs: Any) -> RecordingComm:
        c = RecordingComm(*args, **kwargs)
        made.append(c)
        return c

    monkeypatch.setattr(comm, "create_comm", create)
    yield made


def u16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def u16_prefix(text: str, units: int) -> str:
    return text.encode("utf-16-le", "surrogatepass")[: 2 * units].decode("utf-16-le", "surrogatepass")


class FakeFrontend:
    """stream_view.js's model side, written again in Python from its rules (the chromium test runs the real one).

    Attached to a widget's RecordingComm it sees every kernel message; `attrs` is its model state (what
    JupyterLab would save); `outbox` what it would send to the kernel, handed over by `deliver(view)`.
    Deltas must line up in UTF-16 offsets; an `end` is checked against its length + CRC-32; a passing end is
    stored in `attrs` and acked (unless `ack=False`: a front end that went away after saying hello).
    """

    def __init__(self, view: Any, *, ack: bool = True) -> None:
        state = view.get_state()
        self.attrs: dict[str, Any] = {"_texts": dict(state["_texts"]), "_lanes": copy.deepcopy(state["_lanes"])}
        self.text: dict[str, str] = {m["name"]: state["_texts"].get(m["name"], "") for m in state["_lanes"]}
        self.seq: dict[str, int] = {m["name"]: m["seq"] for m in state["_lanes"]}
        self.asked: dict[str, int] = {}
        self.ack = ack
        self.outbox: list[dict[str, Any]] = [{"t": "hello"}]
        self.acks = 0
        view.comm.listeners.append(self.receive)

    def deliver(self, view: Any) -> None:
        msgs, self.outbox = self.outbox, []
        for m in msgs:
            view._handle_custom_msg(m, [])

    def resyncs(self) -> int:
        return sum(1 for m in self.outbox if m["t"] == "resync")

    def receive(self, data: dict[str, Any]) -> None:
        if data["method"] == "update":
            self.attrs.update(data["state"])
            for m in data["state"].get("_lanes", []):
                if m["status"] != "streaming" and m["seq"] >= self.seq.get(m["name"], -1):
                    self.seq[m["name"]] = m["seq"]
                    self.text[m["name"]] = self.attrs["_texts"].get(m["name"], "")
            return
        c = data["content"]
        if c["t"] == "start" or (c["t"] == "snap" and "h" not in c):
            self.seq[c["lane"]] = c["meta"]["seq"]
            self.text[c["lane"]] = c.get("text", "")
        elif c["t"] == "snap":
            self.seq[c["lane"]] = c["meta"]["seq"]
            self._finalize(c, c["text"])
        elif c["t"] == "d":
            for name, d in c["lanes"].items():
                if d["seq"] != self.seq.get(name) or d["at"] != u16(self.text.get(name, "")):
                    self._ask(name, d["seq"])
                else:
                    self.text[name] += d["s"]
        elif c["t"] == "end":
            have = self.text.get(c["lane"], "")
            if c["seq"] != self.seq.get(c["lane"]) or c["at"] > u16(have):
                self._ask(c["lane"], c["seq"])
            else:
                self._finalize(c, u16_prefix(have, c["at"]) + c["s"])

    def _ask(self, name: str, seq: int) -> None:
        if self.asked.get(name) != seq:
            self.asked[name] = seq
            self.outbox.append({"t": "resync", "lane": name})

    def _finalize(self, c: dict[str, Any], text: str) -> None:
        name = c["lane"]
        self.text[name] = text
        if u16(text) != c["n"] or zlib.crc32(text.encode("utf-16-le", "surrogatepass")) != c["h"]:
            self._ask(name, c["seq"])
            return
        self.attrs["_texts"] = {**self.attrs["_texts"], name: text}
        lanes = [c["meta"] if m["name"] == name else m for m in self.attrs["_lanes"]]
        if not any(m["name"] == name for m in self.attrs["_lanes"]):
            lanes.append(c["meta"])
        self.attrs["_lanes"] = lanes
        if self.ack:
            self.acks += 1
            self.outbox.append({"t": "ack", "lane": name, "seq": c["seq"], "h": c["h"]})


class FakeClock:
    """perf_counter_ns stand-in the test advances by hand: message counts become exact, not timing-dependent."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
