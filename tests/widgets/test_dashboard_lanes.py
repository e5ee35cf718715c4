"""Each A/B lane runs with its own variant's settings, and every control of the Dashboard's panels changes
what runs. Real simulator over loopback HTTP; recording comms stand in for the kernel (no browser)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from widget_fakes import RecordingComm

import workbench.stream.engine as engine_mod
from workbench.optimizations import Optimizations
from workbench.simulator import Profile, Simulator
from workbench.widgets import Dashboard
from workbench.widgets.dashboard import NOT_IN_DASHBOARD, dashboard_optimizations

FAST = Profile(ttft_ms=5.0, token_delay_ms=0.5, jitter=0.0, default_tokens_min=120, default_tokens_max=120)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(FAST) as s:
        yield s


def make(sim: Simulator, a: Optimizations, b: Optimizations, **kw: Any) -> Dashboard:
    return Dashboard(backend=sim.backend("openai"), charts=False, optimizations=a, optimizations_b=b, **kw)


def by_variant(frame: pl.DataFrame, column: str) -> dict[str, list[Any]]:
    return {v: frame.filter(pl.col("variant") == v)[column].to_list() for v in ("A", "B")}


def deltas(comm: RecordingComm) -> int:
    return sum(1 for c in comm.custom() if c.get("t") == "d")


def text_syncs(comm: RecordingComm) -> int:
    return sum(1 for u in comm.updates() if "_texts" in u)


async def test_lane_b_runs_with_its_own_settings_not_a(comms: list[RecordingComm], sim: Simulator) -> None:
    a = Optimizations.baseline()
    b = Optimizations(
        connection_pool=True, fast_parse=True, exact_cache=True, coalesce_ui=True, incremental_render=True
    )
    dash = make(sim, a, b)
    run = await dash.arun_ab(repeats=3)
    frame = run.frame
    assert sorted(frame["status"].to_list()) == ["ok"] * 6
    # The client: each lane's own, its parts built from its own Optimizations.
    ca, cb = dash.lane_clients["A"], dash.lane_clients["B"]
    assert ca is not cb and ca.optimizations == a and cb.optimizations == b
    assert not ca.parts.transport.pooled and cb.parts.transport.pooled
    assert ca.cache is None and cb.cache is not None
    # What ran: every result carries the settings of its own lane.
    for row in frame.select("variant", "request_id").iter_rows():
        result = next(r for r in dash._results if r.request_id == row[1])
        assert result.optimizations == {"A": a, "B": b}[row[0]].as_dict()
    # The cache: B answers its repeats from its cache, A asks the server every time.
    cache = by_variant(frame, "cache")
    assert cache["A"] == ["off"] * 3 and cache["B"] == ["miss", "exact", "exact"]
    # The transport: A opens a connection per request; B's repeats need none (answered from its cache).
    reused = by_variant(frame, "connection_reused")
    assert reused["A"] == [False] * 3 and reused["B"][1:] == [None, None]
    # The view: B's lane coalesces and sends only new text; A's re-sends the whole text per token.
    va, vb = dash.lane_view("A"), dash.lane_view("B")
    assert (va.coalesce_ui, va.incremental_render) == (False, False)
    assert (vb.coalesce_ui, vb.incremental_render) == (True, True)
    assert deltas(vb.comm) >= 1 and deltas(va.comm) == 0
    assert text_syncs(va.comm) > 100 > text_syncs(vb.comm)  # A: one per token (120 tokens, 3 requests)
    dash.close()


# ---- every control changes what runs: flip it on lane B (A stays baseline) and observe the difference ----

Check = Callable[[list[RecordingComm], Simulator, Path, pytest.MonkeyPatch], Awaitable[None]]


async def ab(sim: Simulator, flip: dict[str, Any], repeats: int = 2) -> Dashboard:
    dash = make(sim, Optimizations.baseline(), Optimizations(**flip))
    await dash.arun_ab(repeats=repeats)
    assert dash.run_result is not None and dash.run_result.frame.height == 2 * repeats
    return dash


async def check_connection_pool(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    dash = await ab(sim, {"connection_pool": True}, repeats=3)
    reused = by_variant(dash.results, "connection_reused")
    assert not any(reused["A"]) and any(reused["B"])


async def check_http2(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    with Simulator(FAST, tls=True, http2=True) as s2:
        dash = await ab(s2, {"http2": True})
        versions = by_variant(dash.results, "http_version")
    assert set(versions["A"]) == {"HTTP/1.1"} and set(versions["B"]) == {"HTTP/2"}


async def check_fast_parse(comms: Any, sim: Simulator, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = engine_mod.make_parser

    def spy(*args: Any, **kw: Any) -> Any:
        parser = real(*args, **kw)
        made.append(type(parser).__name__)
        return parser

    mp.setattr(engine_mod, "make_parser", spy)
    await ab(sim, {"fast_parse": True})
    assert sorted(made) == ["BaselineParser", "BaselineParser", "FastParser", "FastParser"]


async def check_early_cancel(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    # Stop mid-stream in a Run: without early_cancel the client reads the stream to its end.
    long = Profile(
        ttft_ms=5.0, token_delay_ms=2.0, jitter=0.0, default_tokens_min=400, default_tokens_max=400
    )
    got: dict[bool, int] = {}
    with Simulator(long) as s2:
        for on in (False, True):
            dash = make(s2, Optimizations(early_cancel=on), Optimizations())
            dash.stop_grace_s = 30.0  # let the run without early cancel drain
            task = dash.run()
            for _ in range(500):
                await asyncio.sleep(0.005)
                if len(dash.view.text("output")) > 20:
                    break
            dash.stop()
            await asyncio.wait_for(task, 20.0)
            result = dash._results[0]
            assert result.status == "cancelled"
            got[on] = int(result.server["client_after_stop"].get("bytes", 0))
            dash.close()
    # without early cancel the rest of the answer still crossed the wire after Stop; with it, ~nothing
    assert got[True] * 10 < got[False], got


async def check_exact_cache(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    cache = by_variant((await ab(sim, {"exact_cache": True})).results, "cache")
    assert cache == {"A": ["off", "off"], "B": ["miss", "exact"]}


async def check_semantic_cache(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    cache = by_variant((await ab(sim, {"semantic_cache": True})).results, "cache")
    assert cache["A"] == ["off", "off"] and cache["B"][0] == "miss" and cache["B"][1] in ("semantic", "exact")


async def check_disk_cache(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    dash = await ab(sim, {"disk_cache": True})
    cache = by_variant(dash.results, "cache")
    assert cache["A"] == ["off", "off"] and cache["B"][0] == "miss" and cache["B"][1] != "miss"
    folder = dash.lane_clients["B"].parts.disk_dir
    assert folder is not None and any(Path(folder).iterdir())
    assert dash.lane_clients["A"].parts.disk_dir is None


async def check_coalesce_ui(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    dash = await ab(sim, {"coalesce_ui": True})
    va, vb = dash.lane_view("A"), dash.lane_view("B")
    assert text_syncs(va.comm) >= 200 and text_syncs(vb.comm) * 4 < text_syncs(va.comm)


async def check_incremental_render(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    dash = await ab(sim, {"incremental_render": True})
    va, vb = dash.lane_view("A"), dash.lane_view("B")
    assert deltas(va.comm) == 0 and deltas(vb.comm) >= 100
    assert vb.comm.bytes() * 3 < va.comm.bytes()  # A re-sends the whole text on each token


async def check_prewarm(comms: Any, sim: Simulator, tmp: Path, mp: Any) -> None:
    # A model that is cold before its first request: a Run with prewarm sends an untimed warm-up first,
    # so the timed request does not pay the 400 ms load; without it, it does.
    cold = Profile(ttft_ms=5.0, token_delay_ms=0.5, jitter=0.0, cold_start=True, load_ms=400.0)
    ttft: dict[bool, float] = {}
    for on in (False, True):
        with Simulator(cold) as s2:
            dash = make(s2, Optimizations(prewarm=on), Optimizations())
            result = await dash.arun()
            assert result is not None and result.metrics.ttft_ms is not None
            ttft[on] = result.metrics.ttft_ms
            assert s2.stats().requests - 1 == (2 if on else 1)  # (the model listing is one request too)
            assert ("output" in dash.prewarm) is on
            dash.close()
    assert ttft[True] * 2 < ttft[False], ttft  # the same run measured the cold case as its reference


CHECKS: dict[str, Check] = {
    "connection_pool": check_connection_pool,
    "http2": check_http2,
    "fast_parse": check_fast_parse,
    "coalesce_ui": check_coalesce_ui,
    "incremental_render": check_incremental_render,
    "exact_cache": check_exact_cache,
    "semantic_cache": check_semantic_cache,
    "disk_cache": check_disk_cache,
    "prewarm": check_prewarm,
    "early_cancel": check_early_cancel,
}


def test_every_panel_control_has_a_check(comms: list[RecordingComm]) -> None:
    dash = Dashboard(charts=False)
    assert sorted(dash.panel.controls) == sorted(CHECKS) == sorted(dash.panel_b.controls)
    # The ones left out have no control, and a run uses their defaults whatever a preset set.
    assert not set(NOT_IN_DASHBOARD) & set(dash.panel.controls)
    dash.panel.set_preset("all on")
    assert dash.panel.value.concurrency == 8
    ran = dashboard_optimizations(dash.panel.value)
    assert ran.concurrency == 1 and not ran.router_fast_path and ran.exact_cache
    dash.close()


@pytest.mark.parametrize("name", list(CHECKS))
async def test_flipping_a_control_changes_what_runs(
    name: str, comms: list[RecordingComm], sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await CHECKS[name](comms, sim, tmp_path, monkeypatch)


async def test_a_panel_click_reaches_the_next_run(comms: list[RecordingComm], sim: Simulator) -> None:
    """The control itself (not the constructor) drives the run: tick B's exact_cache box, run an A/B."""
    dash = make(sim, Optimizations(), Optimizations())
    await dash.arun_ab(repeats=2)
    assert by_variant(dash.results, "cache")["B"] == ["off", "off"]
    dash.panel_b.controls["exact_cache"].value = True
    dash.panel_b.controls["coalesce_ui"].value = True
    await dash.arun_ab(repeats=2)
    assert by_variant(dash.results, "cache")["B"] == ["miss", "exact"]
    assert dash.lane_view("B").coalesce_ui and not dash.lane_view("A").coalesce_ui
    dash.close()


async def test_dashboard_controls_act(comms: list[RecordingComm], sim: Simulator) -> None:
    """Prompt, model, protocol, repeats, preset and backend kind each change what runs or what is shown."""
    dash = Dashboard(charts=False)  # the embedded simulator
    assert dash.url.layout.display == "none" and dash._key_row.layout.display == "none"
    dash.backend_kind.value = "url"
    assert dash.url.layout.display is None and dash._key_row.layout.display is None
    dash.backend_kind.value = "simulator"
    dash.prompt.value = "Name three colours."
    dash.model.value = "sim-large"
    dash.protocol.value = "ollama"
    dash.repeats.value = 2
    dash.panel.preset.value = "transport"
    run = await dash.arun_ab()
    frame = run.frame
    assert frame.height == 4  # repeats
    assert set(frame["protocol"].to_list()) == {"ollama"} and set(frame["model"].to_list()) == {"sim-large"}
    assert set(frame["prompt"].to_list()) == {"Name three colours."}
    assert dash.lane_clients["A"].optimizations == dashboard_optimizations(Optimizations.transport())
    dash.close()


async def test_static_render_shows_lanes_toggles_and_text(comms: list[RecordingComm], sim: Simulator) -> None:
    dash = make(sim, Optimizations(), Optimizations(exact_cache=True))
    await dash.arun_ab(repeats=2)
    st = dash.static()
    for lane in ("A", "B"):
        assert dash.lane_view(lane).text(lane)[:30] in st.markdown
    assert "exact_cache" in st.html and "baseline" in st.html and "A/B done" in st.html
    dash.close()
