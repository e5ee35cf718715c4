"""OptimizationPanel round-trips and the Dashboard's secret handling, on recording comms (no kernel)."""

from __future__ import annotations

import json

import pytest
from widget_fakes import RecordingComm

from workbench.optimizations import Optimizations, describe
from workbench.widgets import Dashboard, OptimizationPanel, SecretField


def test_panel_has_one_control_per_field_with_explanation_and_source(comms: list[RecordingComm]) -> None:
    panel = OptimizationPanel()
    rows = describe()
    assert list(panel.controls) == [r["name"] for r in rows]
    html_rows = [box.children[1].value for box in panel.children[2:]]
    for row, text in zip(rows, html_rows, strict=True):
        assert row["explain"].split()[0] in text and "from:" in text


@pytest.mark.parametrize(
    "value",
    [
        Optimizations.baseline(),
        Optimizations.all(),
        Optimizations.transport(),
        Optimizations(http2=True, concurrency=100),
    ],
)
def test_panel_value_round_trips(comms: list[RecordingComm], value: Optimizations) -> None:
    panel = OptimizationPanel()
    panel.value = value
    assert panel.value == value
    assert {n: c.value for n, c in panel.controls.items()} == value.as_dict()
    rebuilt = OptimizationPanel(Optimizations(**{n: c.value for n, c in panel.controls.items()}))
    assert rebuilt.value == value


def test_flipping_a_box_selects_custom_and_presets_set_boxes(comms: list[RecordingComm]) -> None:
    panel = OptimizationPanel()
    seen: list[Optimizations] = []
    panel.on_change(seen.append)
    changes: list[object] = []
    panel.observe(lambda ch: changes.append(ch["new"]), names="value")
    assert panel.preset.value == "baseline"
    panel.controls["coalesce_ui"].value = True
    assert panel.preset.value == "custom"
    assert panel.value == Optimizations(coalesce_ui=True)
    panel.preset.value = "all on"
    assert panel.value == Optimizations.all() and panel.controls["semantic_cache"].value is True
    panel.preset.value = "custom"  # choosing custom keeps the current toggles
    assert panel.value == Optimizations.all()
    panel.set_preset("transport")
    assert panel.preset.value == "transport"
    assert seen == [Optimizations(coalesce_ui=True), Optimizations.all(), Optimizations.transport()]
    assert changes == seen
    with pytest.raises(ValueError):
        panel.set_preset("fastest")


def test_secret_field_value_never_enters_widget_state(comms: list[RecordingComm]) -> None:
    field = SecretField()
    field._handle_custom_msg({"t": "secret", "value": "sk-very-secret"}, [])
    assert field.value == "sk-very-secret" and field.has_value
    assert "sk-very-secret" not in repr(field)
    assert "sk-very-secret" not in json.dumps(field.get_state(), default=str)


def test_dashboard_api_key_stays_out_of_every_message_and_state(comms: list[RecordingComm]) -> None:
    dash = Dashboard(backend="http://127.0.0.1:9/v1", charts=False)
    dash.api_key._handle_custom_msg({"t": "secret", "value": "sk-very-secret"}, [])
    dash.protocol.value = "openai"
    be = dash.backend()
    assert be.api_key == "sk-very-secret" and "sk-very-secret" not in repr(be)
    everything = json.dumps([entry for c in comms for entry in c.log], default=str)
    assert "sk-very-secret" not in everything
    # What a saved notebook holds: every widget's full state.
    from ipywidgets import Widget

    states = json.dumps(Widget.get_manager_state(drop_defaults=False), default=str)
    assert "sk-very-secret" not in states
    assert dash.view.lanes == ["output"]
    dash.close()


def test_dashboard_panel_drives_the_view_switches(comms: list[RecordingComm]) -> None:
    dash = Dashboard(charts=False)
    assert not dash.view.coalesce_ui  # panel starts at baseline: the honest naive widget (with its guard)
    dash.panel.value = Optimizations(coalesce_ui=True, incremental_render=True)
    assert dash.view.coalesce_ui and dash.view.incremental_render
    with pytest.raises(RuntimeError, match="no running event loop"):
        dash.run()
    dash.close()
