"""Static fallbacks of the widgets: what an exported notebook (nbconvert, `workbench report`) shows.

A widget's output holds the live widget's mime type (`application/vnd.jupyter.widget-view+json`, which needs
a kernel or saved widget state) and, beside it, `text/html` with the widget's current content. nbconvert
drops the widget type when no widget state is saved, so the HTML is what a reader sees.

An output is captured when the widget is displayed, which is usually before a run. So a widget displayed
through `_ipython_display_` keeps the display's id, and `Displays.refresh` re-publishes the bundle after a
run ends when no live front end shows the widget (nbclient, `workbench report`): the saved output then
holds the final text, toggles and charts. With a live front end the saved widget state holds them and the
output is left alone (replacing it would re-create the view mid-session).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

__all__ = ["HTML", "WIDGET_VIEW", "Displays", "with_html"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HTML = "text/html"


def with_html(bundle: Any, html_text: str, plain: str | None = None) -> dict[str, Any]:
    """A widget's mime bundle (dict, or (data, metadata)) with `text/html` (and a better text/plain) added."""
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    out: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    out[HTML] = html_text
    if plain is not None:
        out["text/plain"] = plain
    return out


class Displays:
    """The outputs a widget was displayed in (by id), to bring their static part up to date after a run."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def show(self, bundle: dict[str, Any]) -> Any:
        """Display `bundle` under a new display id; returns the IPython DisplayHandle."""
        from IPython.display import DisplayHandle

        handle = DisplayHandle()  # type: ignore[no-untyped-call]
        handle.display(bundle, raw=True)  # type: ignore[no-untyped-call]
        self.handles.append(handle)
        return handle

    def refresh(self, bundle: Callable[[], dict[str, Any]]) -> int:
        """Re-publish every output this widget was displayed in with `bundle()`; returns how many."""
        if not self.handles:
            return 0
        data = bundle()
        for handle in self.handles:
            handle.update(data, raw=True)
        return len(self.handles)


def table(rows: list[tuple[str, str, str]], head: tuple[str, str, str]) -> str:
    """A small HTML table; every cell is escaped."""
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
    return f"<table class='wb-static'><thead><tr>{th}</tr></thead><tbody>{cells}</tbody></table>"
