"""Static fallbacks (text/html beside the live widget) and the Dashboard's charts by cache outcome.

No nbconvert: the mime bundles are what IPython would publish, checked directly. The Dashboard runs an A/B
against the real simulator over loopback HTTP; recording comms stand in for the kernel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from widget_fakes import RecordingComm

from workbench._types import TextDelta
from workbench.optimizations import Optimizations, describe
from workbench.simulator import Profile, Simulator
from workbench.widgets import Dashboard, OptimizationPanel, StreamView

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FAST = Profile(ttft_ms=5.0, token_delay_ms=0.3, jitter=0.0, default_tokens_min=80, default_tokens_max=80)


class FakeHandle:
    """Stands in for an IPython DisplayHandle: records what the output would be updated with."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update(self, data: dict[str, Any], raw: bool = False) -> None:
        assert raw
        self.updates.append(data)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(FAST) as s:
        yield s


def test_stream_view_bundle_keeps_the_live_widget_and_adds_the_final_text(
    comms: list[RecordingComm],
) -> None:
    view = StreamView(lanes=["A", "B"])
    for lane, text in (("A", "alpha <b>not bold</b> & done"), ("B", "beta 🙂")):
        view.start(lane)
        for piece in text.split(" "):
            view.push(lane, TextDelta(piece + " ", 1))
        view.finish(lane)
    bundle = view._repr_mimebundle_()
    assert bundle is not None
    data, _meta = bundle
    assert data[WIDGET_VIEW]["model_id"] == view.model_id  # the live widget is still there
    html = data["text/html"]
    assert "alpha &lt;b&gt;not bold&lt;/b&gt; &amp; done" in html and "beta 🙂" in html
    assert "done" in html and "tokens" in html  # the status line with the figures
    assert data["text/plain"].startswith("StreamView(A: done") and "object at 0x" not in data["text/plain"]


def test_a_displayed_stream_view_updates_its_output_at_the_end_without_a_front_end(
    comms: list[RecordingComm],
) -> None:
    view = StreamView()
    handle = FakeHandle()
    view._displays.handles.append(handle)  # what _ipython_display_ registers
    view.start()
    view.push(None, TextDelta("first words", 1))
    assert handle.updates == []  # nothing while streaming
    view.finish()
    [data] = handle.updates
    assert "first words" in data["text/html"] and WIDGET_VIEW in data
    # With a live front end (it said hello) the saved widget state holds the text: the output stays.
    view._handle_custom_msg({"t": "hello"}, [])
    view.start()
    view.push(None, TextDelta("second", 2))
    view.finish()
    assert len(handle.updates) == 1


def test_panel_bundle_lists_the_chosen_toggles(comms: list[RecordingComm]) -> None:
    value = Optimizations(connection_pool=True, exact_cache=True)
    panel = OptimizationPanel(value, title="variant B")
    data = panel._repr_mimebundle_()
    assert WIDGET_VIEW in data and data["text/plain"] == f"OptimizationPanel({value.label()})"
    html = data["text/html"]
    assert "variant B" in html and "custom" in html
    for row in describe():
        shown = getattr(value, row["name"])
        cell = "on" if shown is True else "off" if shown is False else str(shown)
        assert f"<td>{row['name']}</td><td>{cell}" in html
    panel.set_preset("all on")
    assert "<td>exact_cache</td><td>on" in panel._repr_mimebundle_()["text/html"]
    assert "all on" in panel._repr_mimebundle_()["text/html"]


def _datasets(chart: Any) -> list[dict[str, Any]]:
    return [row for rows in chart.to_dict(validate=False)["datasets"].values() for row in rows]


async def test_dashboard_charts_hits_apart_and_shows_the_timeline(
    comms: list[RecordingComm], sim: Simulator
) -> None:
    b = Optimizations(connection_pool=True, exact_cache=True)
    dash = Dashboard(backend=sim.backend("openai"), optimizations=Optimizations.baseline(), optimizations_b=b)
    assert dash.charts is not None
    handle = FakeHandle()
    dash._displays.handles.append(handle)
    run = await dash.arun_ab(repeats=3)
    assert sorted(run.frame["cache"].to_list()) == ["exact", "exact", "miss", "off", "off", "off"]
    spec = json.dumps(dash.charts.chart().to_dict(validate=False))
    rows = _datasets(dash.charts.chart())
    # Throughput: B's replays are a group of their own, never pooled with streamed requests.
    groups = {r["group"]: r["n"] for r in rows if "median" in r and "lo" in r}
    expected: dict[str, int] = {}
    for variant, cache, tps in run.frame.select("variant", "cache", "tokens_per_s").iter_rows():
        if tps is not None:  # a stream read in one go has no rate (its chunks share one stamp)
            key = f"{variant} · {'cache hit' if cache == 'exact' else 'streamed'}"
            expected[key] = expected.get(key, 0) + 1
    assert groups == expected and "B · cache hit" in groups and "A · streamed" in groups
    assert "cache hits (replays) apart from streamed requests" in spec
    # The token-arrival timeline has the run's chunks (it said "no data" when fed no chunks frame).
    timeline = [r for r in rows if "chars" in r]
    assert len({r["request_id"] for r in timeline}) == 6 and max(r["chars"] for r in timeline) > 100
    # The status line gives streamed figures and hits apart, too.
    assert "B: 3/3 ok, streamed 1:" in dash.status.value and "cache hits 2:" in dash.status.value
    assert "TPOT" in dash.status.value
    # The static fallback: toggles, both lanes' final texts, the charts; pushed to the displayed output.
    data = dash._repr_mimebundle_()
    assert WIDGET_VIEW in data and "object at 0x" not in data["text/plain"]
    html = data["text/html"]
    a_text = next(r.text for r in dash._results if r.request.tags.get("variant") == "A")
    assert a_text[:60] in html and "<svg" in html and b.label() in html
    assert handle.updates and handle.updates[-1]["text/html"].count("<svg") >= 1
    dash.close()


def test_live_charts_bundle_has_an_svg_beside_the_live_chart(comms: list[RecordingComm]) -> None:
    from workbench.widgets import LiveCharts

    charts = LiveCharts()
    data, _meta = charts._repr_mimebundle_()
    assert WIDGET_VIEW in data and data["image/svg+xml"].startswith("<svg")
    assert "no data" in data["image/svg+xml"]  # nothing ran yet: the grid says so
    charts.close()
