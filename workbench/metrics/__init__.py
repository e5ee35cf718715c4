"""Per-chunk stamps to per-request metrics, frames and summaries."""

from workbench.metrics.recorder import Recorder, compute_metrics

__all__ = ["Recorder", "compute_metrics"]
