"""Dashboard runs against the real simulator over loopback HTTP (recording comms instead of a kernel)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from widget_fakes import RecordingComm

from workbench._types import Backend
from workbench.optimizations import Optimizations
from workbench.simulator import Profile, Simulator
from workbench.widgets import Dashboard, StreamView


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(Profile(ttft_ms=10.0, token_delay_ms=1.0, jitter=0.0)) as s:
        yield s


def make(sim: Simulator, **kw: object) -> Dashboard:
    return Dashboard(backend=Backend(sim.url, protocol="openai"), charts=False, **kw)  # type: ignore[arg-type]


async def test_run_streams_into_the_view_and_results(comms: list[RecordingComm], sim: Simulator) -> None:
    dash = make(sim, optimizations=Optimizations(coalesce_ui=True, incremental_render=True))
    task = dash.run()
    assert dash.running and dash.stop_button.disabled is False and dash.run_button.disabled
    result = await task
    assert result is not None and result.status == "ok" and result.text
    assert dash.view.text("output") == result.text
    assert dash.view.figures("output")["status"] == "done"
    frame = dash.results
    assert frame.height == 1 and frame["status"].to_list() == ["ok"]
    assert dash.progress.value == 1 and not dash.running and dash.stop_button.disabled
    assert dash.status.value.startswith("ok: TTFT")
    dash.close()


async def test_ab_runs_interleaved_through_acompare(comms: list[RecordingComm], sim: Simulator) -> None:
    dash = make(
        sim,
        optimizations=Optimizations(coalesce_ui=True, incremental_render=True),
        optimizations_b=Optimizations.transport(),
    )
    run = await dash.run_ab(repeats=2)
    assert [v.lanes for v in dash.views_box.children] == [["A"], ["B"]]
    frame = dash.results
    assert frame.height == 4 and sorted(frame["variant"].to_list()) == ["A", "A", "B", "B"]
    assert set(frame["status"].to_list()) == {"ok"}
    # Interleaved: the variants alternate rather than running as two blocks.
    assert frame["variant"].to_list() != ["A", "A", "B", "B"]
    assert run is dash.run_result and dash.progress.value == 4
    for lane in ("A", "B"):
        assert dash.lane_view(lane).figures(lane)["status"] == "done" and dash.lane_view(lane).text(lane)
    assert dash.status.value.startswith("A/B done")
    dash.close()


async def test_stop_mid_stream_ends_run_promptly(comms: list[RecordingComm]) -> None:
    slow = Profile(
        ttft_ms=5.0, token_delay_ms=5.0, jitter=0.0, default_tokens_min=20_000, default_tokens_max=20_000
    )
    with Simulator(slow) as s:
        dash = make(
            s, optimizations=Optimizations(coalesce_ui=True, incremental_render=True, early_cancel=True)
        )
        task = dash.run()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(dash.view.text("output")) > 20:
                break
        assert dash.view.text("output"), "nothing streamed"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        dash.stop()
        assert dash.view.figures("output")["status"] == "cancelled"  # the view shows it at once
        await asyncio.wait_for(task, 2.0)
        assert loop.time() - t0 < 1.0
        assert dash.results["status"].to_list() == ["cancelled"]
        assert not dash.running and dash.run_button.disabled is False
        dash.close()


async def test_ab_stop_keeps_partial_results(comms: list[RecordingComm]) -> None:
    slow = Profile(
        ttft_ms=5.0, token_delay_ms=2.0, jitter=0.0, default_tokens_min=2_000, default_tokens_max=2_000
    )
    with Simulator(slow) as s:
        dash = make(
            s, optimizations=Optimizations(coalesce_ui=True, incremental_render=True, early_cancel=True)
        )
        task = dash.run_ab(repeats=5)
        await asyncio.sleep(0.3)
        dash.stop()
        run = await asyncio.wait_for(task, 5.0)
        assert run is not None and run.frame.height < 10
        assert any("stopped early" in w for w in run.meta["warnings"])
        assert all(dash.lane_view(ln).figures(ln)["status"] != "streaming" for ln in ("A", "B"))
        dash.close()


async def test_dashboard_with_live_charts_updates_them(comms: list[RecordingComm], sim: Simulator) -> None:
    dash = Dashboard(
        backend=Backend(sim.url, protocol="openai"),
        charts=True,
        optimizations=Optimizations(coalesce_ui=True, incremental_render=True),
    )
    assert dash.charts is not None
    await dash.run_ab(repeats=1)
    assert dash.charts.updates_sent >= 1
    dash.close()


async def test_stop_without_early_cancel_frees_the_notebook_after_the_grace(
    comms: list[RecordingComm],
) -> None:
    slow = Profile(
        ttft_ms=5.0, token_delay_ms=5.0, jitter=0.0, default_tokens_min=20_000, default_tokens_max=20_000
    )
    with Simulator(slow) as s:
        dash = make(
            s, optimizations=Optimizations(coalesce_ui=True, incremental_render=True, early_cancel=False)
        )
        dash.stop_grace_s = 0.3
        task = dash.run()
        await asyncio.sleep(0.2)
        dash.stop()
        assert dash.view.figures("output")["status"] == "cancelled"
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, "the run kept going after Stop"
        assert not dash.running and dash.run_button.disabled is False
        assert dash.status.value.startswith(("stopped", "cancelled"))
        dash.close()


def test_consume_a_real_sync_client_stream(comms: list[RecordingComm], sim: Simulator) -> None:
    from workbench._types import Request
    from workbench.client import Client

    view = StreamView(lanes=["sync"])
    client = Client(Backend(sim.url, protocol="ollama"))
    try:
        req = Request.chat("sim-small", "hello there")
        with client.stream(req) as s:
            result = view.consume(s, "sync")
    finally:
        client.close()
    assert result is not None and result.status == "ok"
    f = view.figures("sync")
    assert (
        view.text("sync") == result.text
        and f["status"] == "done"
        and f["tokens"] == result.metrics.output_tokens
    )
    final = view.comm.updates()[-1]
    assert final["_texts"]["sync"] == result.text


async def test_arun_a_real_async_client_and_show_static(comms: list[RecordingComm], sim: Simulator) -> None:
    from workbench._types import Request
    from workbench.client import AsyncClient

    view = StreamView()
    async with AsyncClient(Backend(sim.url, protocol="openai")) as client:
        result = await view.arun(client, Request.chat("sim-large", "hello"))
    assert result is not None and view.text() == result.text
    shown: list[object] = []
    handle = view.show()
    handle.update = shown.append  # what an exported notebook gets instead of the live widget
    view.freeze()
    assert len(shown) == 1 and result.text[:40] in shown[0]._repr_markdown_()  # type: ignore[attr-defined]
