"""LiveCharts: aggregated, rate-limited, deduplicated updates; offline JS; static export."""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from workbench.widgets.live_charts import LiveCharts


def _frame(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "variant": rng.choice(["baseline", "all-on"], n).tolist(),
            "status": ["ok"] * n,
            "ttft_ms": rng.gamma(2.0, 20.0, n),
            "tokens_per_s": rng.normal(80.0, 10.0, n),
            "cache": rng.choice(["miss", "exact"], n).tolist(),
            "sent_ns": np.sort(rng.integers(0, 10**10, n)),
        }
    )


def test_offline_bundle_and_first_update() -> None:
    live = LiveCharts()
    esm = live.widget._esm
    assert len(esm) > 100_000 and "cdn.jsdelivr.net" not in esm  # vega bundled, not fetched
    assert live.update(_frame(20), force=True)
    assert live.updates_sent == 1
    live.close()


def test_update_size_does_not_grow_with_the_data() -> None:
    live = LiveCharts(max_hz=1000.0)
    live.update(_frame(50), force=True)
    small = live.bytes_sent
    live.update(_frame(20_000, seed=1), force=True)
    big = live.bytes_sent - small
    # Aggregates only: 400x the samples must not mean more than ~2x the bytes.
    assert big < 2 * small, (small, big)
    live.close()


def test_rate_limit_with_trailing_update_and_dedupe() -> None:
    live = LiveCharts(max_hz=2.0)
    assert live.update(_frame(10, seed=1), force=True)
    # Within 0.5 s: held back, then sent by the trailing timer.
    assert live.update(_frame(30, seed=2)) is False
    assert live.update(_frame(40, seed=3)) is False
    deadline = time.monotonic() + 15.0  # the gap grows with the cost of an update on a loaded machine
    while live.updates_sent < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.updates_sent == 2
    sent = live.widget.chart.to_dict()
    rows = sum(r.get("n", 0) for d in sent["datasets"].values() for r in d if "lo" in r and "median" in r)
    assert rows == 40  # the latest frame, not an intermediate one
    # The same data again changes nothing on the wire.
    assert live.flush() is False and live.updates_sent == 2
    live.close()


def test_static_render_has_every_panel() -> None:
    live = LiveCharts()
    live.update(_frame(30), force=True)
    svg = live.static()._repr_svg_()
    for title in ("Time to first token", "Throughput per variant", "Cache outcomes", "Token arrival"):
        assert title in svg
    assert live.static("png").data.startswith(b"\x89PNG")
    live.close()


def test_panels_keep_their_own_colour_scales() -> None:
    # Shared colour scales across concatenated panels made the variant marks invisible (cache palette won).
    spec = LiveCharts(offline=False).chart().to_dict()
    assert spec["resolve"]["scale"]["color"] == "independent"
    assert all(row["resolve"]["scale"]["color"] == "independent" for row in spec["vconcat"])
