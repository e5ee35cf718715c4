"""Per-lane state of a StreamView: it lives in `workbench.view.lane` (pure, importable without widgets)."""

from workbench.view.lane import (
    LaneState,
    PendingEnd,
    StaticView,
    fingerprint,
    live_meta,
    render_static,
    replace_meta,
    status_line,
    utf16_len,
)

__all__ = [
    "LaneState",
    "PendingEnd",
    "StaticView",
    "fingerprint",
    "live_meta",
    "render_static",
    "replace_meta",
    "status_line",
    "utf16_len",
]
