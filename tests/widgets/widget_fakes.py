"""Widget test doubles: a recording comm (every message with its JSON size, no kernel) and a manual clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):  # type: ignore[misc]
    """Records what the kernel would publish on IOPub for this comm (msg_type, data, bytes)."""

    log: list[tuple[str, dict[str, Any], int]]

    def __init__(self, **kwargs: Any) -> None:
        self.log = []
        super().__init__(**kwargs)

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        # The content ipykernel would publish: {"data": ..., "comm_id": ...} (header and signature not counted).
        content = {"data": data or {}, "comm_id": self.comm_id, **keys}
        payload = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
        self.log.append((msg_type, content, len(payload) + sum(len(b) for b in buffers or ())))

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
