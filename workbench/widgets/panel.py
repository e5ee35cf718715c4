"""`OptimizationPanel`: one control per `Optimizations` field, with its explanation and where it comes from.

Built from `workbench.optimizations.describe()`, so a new toggle appears here without touching this file.
Plain ipywidgets (checkboxes, a slider, toggle buttons) because nothing here streams: no custom front end
is worth its weight.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w
import traitlets

from workbench.optimizations import Optimizations, describe
from workbench.widgets._static import table, with_html

__all__ = ["PRESETS", "OptimizationPanel"]

PRESETS: dict[str, Callable[[], Optimizations]] = {
    "baseline": Optimizations.baseline,
    "all on": Optimizations.all,
    "transport": Optimizations.transport,
}
CUSTOM = "custom"


class OptimizationPanel(w.VBox):  # type: ignore[misc]
    """Toggles bound to an `Optimizations` value.

    Read or set `panel.value`; react with `panel.observe(fn, names="value")` (traitlets change dict) or
    `panel.on_change(fn)` (called with the new `Optimizations`). Presets: baseline, all on, transport,
    custom (chosen automatically when a control no longer matches a preset).
    """

    value = traitlets.Instance(Optimizations)  # Python-side only: the controls carry the synced state

    def __init__(
        self,
        value: Optimizations | None = None,
        *,
        title: str = "Optimizations",
        hide: Sequence[str] = (),
        note: str = "",
        **kwargs: Any,
    ) -> None:
        """`hide`: fields that get no control (a host that cannot act on them, e.g. the Dashboard and
        `concurrency`); they keep `value`'s setting. `note`: a line under the controls saying why."""
        start = value if value is not None else Optimizations.baseline()
        unknown = set(hide) - {row["name"] for row in describe()}
        if unknown:
            raise ValueError(f"hide names no Optimizations field: {sorted(unknown)}")
        self.hidden = tuple(hide)
        self._updating = False
        self.controls: dict[str, w.Widget] = {}
        rows: list[w.Widget] = []
        for row in describe():
            name = row["name"]
            if name in self.hidden:
                continue
            ctl: w.Widget
            if row["type"] == "int":
                ctl = w.IntSlider(
                    value=getattr(start, name),
                    min=1,
                    max=64,
                    description=name,
                    style={"description_width": "initial"},
                    layout=w.Layout(width="260px"),
                )
            else:
                ctl = w.Checkbox(
                    value=getattr(start, name), description=name, indent=False, layout=w.Layout(width="200px")
                )
            ctl.observe(self._on_control, names="value")
            self.controls[name] = ctl
            info = w.HTML(
                f'<span title="{html.escape(row["source"])}">{html.escape(row["explain"])}</span>'
                f' <span style="color:var(--jp-ui-font-color2,#777);font-size:90%">'
                f"(from: {html.escape(row['source'])})</span>"
            )
            rows.append(w.HBox([ctl, info]))
        self.preset = w.ToggleButtons(
            options=[*PRESETS, CUSTOM], value=_preset_of(start), style={"button_width": "80px"}
        )
        self.preset.observe(self._on_preset, names="value")
        self._title = title
        self.heading = w.HTML(f"<b>{html.escape(title)}</b>")
        extra = [w.HTML(f"<i>{html.escape(note)}</i>")] if note else []
        super().__init__(children=[self.heading, self.preset, *rows, *extra], **kwargs)
        self.value = start

    # ---- public ----

    def on_change(self, fn: Callable[[Optimizations], None]) -> None:
        """Call `fn(new_value)` whenever the value changes (from a control, a preset or code)."""
        self.observe(lambda change: fn(change["new"]), names="value")

    def static_html(self) -> str:
        """The chosen toggles as an HTML table (title, preset, one row per field with its explanation)."""
        rows = [
            (
                row["name"],
                _shown(getattr(self.value, row["name"]))
                + (" (no control here)" if row["name"] in self.hidden else ""),
                row["explain"],
            )
            for row in describe()
        ]
        return (
            f"<div class='wb-panel'><b>{html.escape(self._title)}</b> · preset: "
            f"<code>{html.escape(str(self.preset.value))}</code>"
            f"{table(rows, ('toggle', 'value', 'what it does'))}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live controls plus `text/html` of the chosen toggles, for exported notebooks."""
        plain = f"OptimizationPanel({self.value.label()})"
        return with_html(super()._repr_mimebundle_(**kwargs), self.static_html(), plain)

    def set_preset(self, name: str) -> None:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
        self.value = PRESETS[name]()

    # ---- syncing controls and value ----

    @traitlets.observe("value")
    def _value_changed(self, change: dict[str, Any]) -> None:
        new: Optimizations = change["new"]
        self._updating = True
        try:
            for name, ctl in self.controls.items():
                v = getattr(new, name)
                if isinstance(ctl, w.IntSlider) and v > ctl.max:
                    ctl.max = v
                ctl.value = v
            self.preset.value = _preset_of(new)
        finally:
            self._updating = False

    def _on_control(self, _change: dict[str, Any]) -> None:
        if self._updating:
            return
        # hidden fields keep their current setting
        self.value = self.value.replace(**{name: ctl.value for name, ctl in self.controls.items()})

    def _on_preset(self, change: dict[str, Any]) -> None:
        if self._updating or change["new"] == CUSTOM:
            return
        self.value = PRESETS[change["new"]]()


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _preset_of(value: Optimizations) -> str:
    for name, make in PRESETS.items():
        if make() == value:
            return name
    return CUSTOM
