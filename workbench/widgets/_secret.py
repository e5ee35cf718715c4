"""`SecretField`: a password box whose value reaches the kernel in a custom message only.

It is never a synced trait, so it is not in the widget state a notebook saves (the Dashboard's API key).
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

__all__ = ["SecretField"]

_SECRET_ESM = """
function render({ model, el }) {
  const input = document.createElement("input");
  input.type = "password";
  input.autocomplete = "off";
  input.placeholder = model.get("placeholder");
  const note = document.createElement("span");
  note.style.marginLeft = "6px";
  const paint = () => {
    note.textContent = model.get("has_value") ? "key set (kept in the kernel only)" : "";
  };
  input.addEventListener("change", () => {
    model.send({ t: "secret", value: input.value });
    input.value = "";
  });
  model.on("change:has_value", paint);
  paint();
  el.append(input, note);
}
export default { render };
"""


class SecretField(anywidget.AnyWidget):
    """A password box; its value reaches the kernel in a custom message only (never saved in the notebook)."""

    _esm = _SECRET_ESM
    has_value = traitlets.Bool(False).tag(sync=True)
    placeholder = traitlets.Unicode("API key (optional)").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        self._secret: str | None = None
        super().__init__(**kwargs)
        self.on_msg(self._on_front_msg)

    @property
    def value(self) -> str | None:
        return self._secret

    @value.setter
    def value(self, secret: str | None) -> None:
        self._secret = secret or None
        self.has_value = self._secret is not None

    def _on_front_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("t") == "secret":
            self.value = str(content.get("value") or "")

    def __repr__(self) -> str:
        return f"SecretField(has_value={self.has_value})"
