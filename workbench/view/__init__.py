"""The view side of a stream, without widgets: what is sent to a front end, and what that costs.

`ViewModel` decides, sans I/O, which messages a stream view sends (coalescing window, deltas vs full state);
`workbench.widgets.StreamView` sends exactly those. `view_cost` / `view_columns` run the same model headless
over a stream's stamped chunks, so `coalesce_ui` and `incremental_render` are measurable in a bench run.
Nothing here imports ipywidgets or anywidget: the core may import it.
"""

from workbench.view.cost import UI_COLUMNS, message_bytes, view_columns, view_cost
from workbench.view.lane import LaneState, StaticView, render_static, status_line
from workbench.view.model import DEFAULT_MAX_NAIVE_UPDATES, Message, ViewModel

__all__ = [
    "DEFAULT_MAX_NAIVE_UPDATES",
    "UI_COLUMNS",
    "LaneState",
    "Message",
    "StaticView",
    "ViewModel",
    "message_bytes",
    "render_static",
    "status_line",
    "view_columns",
    "view_cost",
]
