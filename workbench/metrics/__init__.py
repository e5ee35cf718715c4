"""Per-chunk stamps to per-request metrics, frames and summaries."""

from workbench.metrics.frames import (
    chunks_frame,
    error_summary,
    itl_frame,
    load_frame,
    save_frame,
    to_frame,
    tokens_note,
)
from workbench.metrics.recorder import Recorder, compute_metrics
from workbench.metrics.summary import bootstrap_ci, diff_ci, percentile, ratio_ci, summarize

__all__ = [
    "Recorder",
    "bootstrap_ci",
    "chunks_frame",
    "compute_metrics",
    "diff_ci",
    "error_summary",
    "itl_frame",
    "load_frame",
    "percentile",
    "ratio_ci",
    "save_frame",
    "summarize",
    "to_frame",
    "tokens_note",
]
