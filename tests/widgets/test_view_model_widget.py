"""StreamView sends exactly what `workbench.view.ViewModel` decides: the same calls at the same times give
the same messages, so the headless `view_cost` measures what the widget really sends."""

from __future__ import annotations

import pytest
from widget_fakes import FakeClock, RecordingComm

from workbench._types import TextDelta
from workbench.view import ViewModel, message_bytes
from workbench.widgets import StreamView


@pytest.mark.parametrize(
    ("coalesce", "incremental"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_the_widget_sends_what_the_view_model_returns(
    comms: list[RecordingComm], clock: FakeClock, coalesce: bool, incremental: bool
) -> None:
    view = StreamView(coalesce_ui=coalesce, incremental_render=incremental, rate_hz=20.0, clock=clock)
    vm = ViewModel(coalesce=coalesce, incremental=incremental, rate_hz=20.0)
    comm = view.comm
    assert isinstance(comm, RecordingComm)
    comm.clear()
    expected = []
    for stream in range(2):
        view.start()
        expected += vm.start("output", clock.now)
        for i in range(300):
            clock.advance(0.0007 if i % 50 else 0.08)  # bursts, and pauses longer than the window
            ev = TextDelta(f"s{stream} t{i} ", clock.now)
            view.push(None, ev)
            expected += vm.on_event("output", ev, clock.now)
        view.finish()
        vm.lane("output").status = "done"
        expected += vm.end("output", live=False)
    sent = [data["data"] for _, data, _ in comm.widget_msgs()]
    assert sent == expected
    assert sum(message_bytes(m) for m in sent) == sum(message_bytes(m) for m in expected)
    assert view.flushes == vm.flushes > 0
