"""Notebook widgets: live stream view, optimization panel, live chart grid, dashboard.

Plots live in `workbench.charts`.
"""

from workbench.widgets.dashboard import Dashboard, SecretField
from workbench.widgets.live_charts import LiveCharts
from workbench.widgets.panel import PRESETS, OptimizationPanel
from workbench.widgets.stream_view import StaticView, StreamView

__all__ = [
    "PRESETS",
    "Dashboard",
    "LiveCharts",
    "OptimizationPanel",
    "SecretField",
    "StaticView",
    "StreamView",
]
