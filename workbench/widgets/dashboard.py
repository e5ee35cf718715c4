"""`Dashboard`: prompt, backend, toggles, Run / A-B / Stop, live stream views and charts in one widget.

Runs are asyncio tasks on the kernel's own event loop (the cell returns at once), so a Stop click is
handled while a stream is running: it sets the run's stop event and cancels the streams in flight. The A/B
logic is `workbench.experiments.acompare` (interleaved variants, same prompts, N repeats); this module only
wires its `on_event` / `on_result` hooks to the widgets.

Each lane of an A/B runs with its own variant's settings: its own `AsyncClient` built from that variant's
`Optimizations` (transport, parser, cache tiers: `workbench.variant.build`), its own `StreamView` configured
from the same value (`coalesce_ui`, `incremental_render`), and its own warm-up when `prewarm` is on. The
panels offer only the toggles a Dashboard run can act on (`NOT_IN_DASHBOARD` says which are left out and why).

The API key field is a tiny anywidget whose value travels to the kernel in a custom message and is kept in
a Python attribute only: it is never a synced trait, so it is not in the widget state a notebook saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import Iterator
from typing import Any

import ipywidgets as w
import polars as pl

from workbench._exceptions import WorkbenchError
from workbench._types import Backend, Request, StreamEvent, StreamResult, Timeouts
from workbench.charts.timing import CACHE_HITS
from workbench.client import AsyncClient
from workbench.experiments import RunResult, Workload, acompare
from workbench.experiments._toggles import prewarm as warm_up
from workbench.experiments.clients import make_client
from workbench.metrics.frames import chunks_frame, to_frame
from workbench.optimizations import Optimizations
from workbench.simulator import Profile, Simulator
from workbench.widgets._secret import SecretField
from workbench.widgets._static import Displays, with_html
from workbench.widgets.live_charts import LiveCharts
from workbench.widgets.panel import OptimizationPanel
from workbench.widgets.stream_view import StaticView, StreamView

__all__ = ["NOT_IN_DASHBOARD", "Dashboard", "SecretField", "dashboard_optimizations"]

SIMULATOR = "simulator"

#: Toggles a Dashboard run cannot act on, so its panels show no control for them and runs use their
#: defaults: a lane streams one request at a time (no batch for a worker pool: `concurrency`), and the
#: Dashboard sends the prompt to the model it names (no router whose classification could be skipped:
#: `router_fast_path`). Both act in `workbench bench` (arrival modes, `--scenarios`).
NOT_IN_DASHBOARD: tuple[str, ...] = ("concurrency", "router_fast_path")
_PANEL_NOTE = (
    "Not offered here: concurrency and router_fast_path act on batches and routed runs "
    "(workbench bench --scenarios); a Dashboard lane streams one request at a time to the model named above."
)


def dashboard_optimizations(opts: Optimizations) -> Optimizations:
    """`opts` as a Dashboard run uses it: the `NOT_IN_DASHBOARD` fields at their defaults."""
    base = Optimizations()
    return opts.replace(**{name: getattr(base, name) for name in NOT_IN_DASHBOARD})


class Dashboard(w.VBox):  # type: ignore[misc]
    """Everything for an interactive session. `dash.results` is a polars frame of the last run.

    From code: `dash.run()` / `dash.run_ab()` start a task and return it; `await dash.arun()` /
    `await dash.arun_ab()` wait for the end; `dash.stop()` ends a run mid-stream.
    """

    def __init__(
        self,
        *,
        prompt: str = "Explain what time to first token measures, in three sentences.",
        backend: Backend | str | None = None,
        model: str | None = None,
        optimizations: Optimizations | None = None,
        optimizations_b: Optimizations | None = None,
        repeats: int = 3,
        charts: bool = True,
        profile: Profile | None = None,
        **kwargs: Any,
    ) -> None:
        """`profile`: the embedded simulator's latency model (default `Profile()`); `backend`: a server
        instead of the embedded simulator."""
        self._sim: Simulator | None = None
        self._profile = profile
        self._client: AsyncClient | None = None
        self._client_key: tuple[Any, ...] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._busy = False
        #: Seconds a stopped run may take to wind down before its task is cancelled.
        self.stop_grace_s = 1.0
        self._stop_event: asyncio.Event | None = None
        self._results: list[StreamResult] = []
        self._lane_request: dict[str, str] = {}
        self.run_result: RunResult | None = None  # of the last A/B run
        #: The clients the last A/B ran each lane with (closed; their `.parts` say what each lane used).
        self.lane_clients: dict[str, AsyncClient] = {}
        #: Milliseconds each lane's untimed warm-up took in the last run (`prewarm`), or its error.
        self.prewarm: dict[str, float | str] = {}
        self._displays = Displays()

        self.prompt = w.Textarea(
            value=prompt, description="Prompt", layout=w.Layout(width="100%", height="70px")
        )
        self.backend_kind = w.Dropdown(
            options=[("embedded simulator", SIMULATOR), ("server URL", "url")],
            value=SIMULATOR,
            description="Backend",
        )
        self.url = w.Text(placeholder="http://127.0.0.1:11434", description="URL")
        # With the embedded simulator (which speaks both) "auto" means OpenAI SSE.
        self.protocol = w.Dropdown(options=["auto", "ollama", "openai"], value="auto", description="Protocol")
        self.api_key = SecretField()
        self._key_row = w.HBox([w.Label("API key"), self.api_key])
        self._verify: bool | str = True  # a given Backend's TLS trust (e.g. the simulator's own CA)
        if backend is not None:
            be = Backend(backend) if isinstance(backend, str) else backend
            self._verify = be.verify
            self.backend_kind.value = "url"
            self.url.value = be.url
            self.protocol.value = be.protocol
            self.api_key.value = be.api_key
        # empty: the first model the server lists, asked when a run starts
        self.model = w.Text(value=model or "", placeholder="first listed by the server", description="Model")
        self.panel = OptimizationPanel(
            optimizations,
            title="A: optimizations for Run and variant A",
            hide=NOT_IN_DASHBOARD,
            note=_PANEL_NOTE,
        )
        self.panel_b = OptimizationPanel(
            optimizations_b if optimizations_b is not None else Optimizations.all(),
            title="B: variant B",
            hide=NOT_IN_DASHBOARD,
            note=_PANEL_NOTE,
        )
        self.repeats = w.BoundedIntText(value=repeats, min=1, max=1000, description="A/B repeats")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.ab_button = w.Button(description="A/B", button_style="info", icon="balance-scale")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.run_button.on_click(lambda _b: self.run())
        self.ab_button.on_click(lambda _b: self.run_ab())
        self.stop_button.on_click(lambda _b: self.stop())
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Progress")
        self.status = w.HTML("ready")
        # One StreamView per lane, each configured from its own variant: a view's update switches are
        # view-wide, so two lanes in one view could not differ in coalesce_ui / incremental_render.
        lane_layout = {"flex": "1 1 0%", "min_width": "0"}
        self.view = StreamView(
            lanes=["output"], optimizations=self.panel.value, layout=w.Layout(**lane_layout)
        )
        self.lane_views: dict[str, StreamView] = {
            name: StreamView(lanes=[name], optimizations=panel.value, layout=w.Layout(**lane_layout))
            for name, panel in (("A", self.panel), ("B", self.panel_b))
        }
        self.panel.on_change(self.view.configure)
        self.panel.on_change(self.lane_views["A"].configure)
        self.panel_b.on_change(self.lane_views["B"].configure)
        self.views_box = w.HBox([self.view], layout=w.Layout(width="100%"))
        self.backend_kind.observe(lambda _ch: self._show_backend_fields(), names="value")
        self._show_backend_fields()

        self.charts: LiveCharts | None = LiveCharts() if charts else None
        chart_box: list[Any] = [self.charts.widget] if self.charts is not None else []

        backend_box = w.VBox(
            [
                w.HBox([self.backend_kind, self.model]),
                w.HBox([self.url, self.protocol]),
                self._key_row,
            ]
        )
        variants = w.Accordion(children=[self.panel, self.panel_b], titles=("A (Run)", "B (A/B only)"))
        buttons = w.HBox([self.run_button, self.ab_button, self.stop_button, self.repeats])
        super().__init__(
            children=[
                self.prompt,
                backend_box,
                variants,
                buttons,
                self.progress,
                self.status,
                self.views_box,
                *chart_box,
            ],
            **kwargs,
        )
        self.add_class("wb-dashboard")  # a handle for styling and for the browser test

    # ---- configuration ----

    def backend(self) -> Backend:
        """The chosen backend; the embedded simulator is started on first use."""
        if self.backend_kind.value == SIMULATOR:
            if self._sim is None:
                self._sim = Simulator(self._profile).start()
            chosen = self.protocol.value
            return Backend(self._sim.url, protocol="openai" if chosen == "auto" else chosen, name="simulator")
        url = self.url.value.strip()
        return Backend(url, protocol=self.protocol.value, api_key=self.api_key.value, verify=self._verify)

    async def abackend(self) -> Backend:
        """`backend()` without blocking the loop while the embedded simulator starts (a Stop stays live)."""
        if self.backend_kind.value == SIMULATOR and self._sim is None:
            return await asyncio.to_thread(self.backend)
        return self.backend()

    def request(self, prompt: str | None = None, **tags: Any) -> Request:
        return Request.chat(
            self.model.value.strip(), prompt if prompt is not None else self.prompt.value, tags=tags
        )

    @property
    def results(self) -> pl.DataFrame:
        """One row per request of the last run (`workbench.metrics.to_frame`; the A/B run's frame for A/B)."""
        if self.run_result is not None:
            return self.run_result.frame
        return to_frame(self._results)

    @property
    def running(self) -> bool:
        return self._busy

    def lane_view(self, lane: str) -> StreamView:
        """The StreamView showing `lane` ("output" for Run, "A" / "B" for an A/B)."""
        return self.lane_views[lane] if lane in self.lane_views else self.view

    def views(self) -> Iterator[StreamView]:
        yield self.view
        yield from self.lane_views.values()

    # ---- runs ----

    def run(self, prompt: str | None = None) -> asyncio.Task[Any]:
        """Stream one request with the A optimizations into the view; returns the task (does not block)."""
        loop = self._idle_loop()
        self._begin(lanes=["output"], total=1)
        self._task = loop.create_task(self._single(prompt))
        return self._task

    def run_ab(self, repeats: int | None = None) -> asyncio.Task[Any]:
        """A/B: the prompt `repeats` times under A and B, interleaved (`workbench.experiments.acompare`)."""
        loop = self._idle_loop()
        n = self._begin_ab(repeats)
        self._task = loop.create_task(self._ab(n) if n else self._single(None))
        return self._task

    def stop(self) -> None:
        """End the current run now: streams in flight are cancelled, no new request is sent."""
        if self._stop_event is not None:
            self._stop_event.set()
        for view in self.views():
            view.cancel_all()
        if self._busy:
            self._set_status("stopping…")
        task = self._task
        if task is not None and not task.done():
            # A variant with early_cancel off reads its stream to the end after a stop (what that toggle
            # measures); past the grace period the task is cancelled so the notebook is free again.
            task.get_loop().call_later(self.stop_grace_s, lambda: task.done() or task.cancel())

    async def arun(self, prompt: str | None = None) -> StreamResult | None:
        """`run()` for code that awaits: returns the result (None when stopped before it started)."""
        self._idle_loop()
        self._begin(lanes=["output"], total=1)
        return await self._single(prompt)

    async def arun_ab(self, repeats: int | None = None) -> Any:
        """`run_ab()` for code that awaits: returns the `RunResult`."""
        self._idle_loop()
        n = self._begin_ab(repeats)
        return await (self._ab(n) if n else self._single(None))

    async def _single(self, prompt: str | None) -> StreamResult | None:
        result: StreamResult | None = None
        try:
            backend = await self.abackend()
            opts = dashboard_optimizations(self.panel.value)
            self.view.configure(opts)
            client = self._client_for(backend, opts)
            if not self.model.value.strip():
                self.model.value = await client.default_model()
            self.prewarm = {}
            if opts.prewarm:
                await self._prewarm("output", client, backend, self.model.value.strip())
            req = self.request(prompt, variant=opts.label())
            self.view.start("output", request=req)
            try:
                async with client.stream(req) as s:
                    if self._stop_event is not None and self._stop_event.is_set():
                        s.cancel()
                    result = await self.view.aconsume(s, "output")
            except WorkbenchError as exc:
                result = exc.result
            if result is not None:
                self._record(result)
            self._set_status(self._describe(result) + self._describe_prewarm())
        except asyncio.CancelledError:
            self._set_status("stopped")
            raise
        except Exception as exc:  # shown in the widget: a task's exception would otherwise go unseen
            if self.view.figures("output")["status"] == "streaming":
                self.view.fail("output", exc)
            self._set_status(
                f"<span style='color:#b00020'>{html.escape(type(exc).__name__)}: "
                f"{html.escape(str(exc))}</span>"
            )
        finally:
            self._end()
        return result

    def _begin_ab(self, repeats: int | None) -> int:
        """Prepare an A/B run: `repeats` (or the box's value) requests per variant."""
        n = repeats if repeats is not None else int(self.repeats.value)
        self._begin(lanes=["A", "B"], total=2 * n)
        return n

    async def _ab(self, n: int) -> Any:
        variants = {
            "A": dashboard_optimizations(self.panel.value),
            "B": dashboard_optimizations(self.panel_b.value),
        }
        clients: dict[str, AsyncClient] = {}
        try:
            backend = await self.abackend()
            timeouts = Timeouts()
            # Each lane's own client (its parts built from its own Optimizations) and its own view.
            for name, opts in variants.items():
                self.lane_views[name].configure(opts)
                clients[name] = make_client(backend, opts, timeouts)
            self.lane_clients = clients
            if not self.model.value.strip():
                self.model.value = await clients["A"].default_model()
            model = self.model.value.strip()
            self.prewarm = {}  # `prewarm` in an A/B: the runner warms each variant's client before it
            handed = iter(variants)

            def lane_client(backend: Backend, optimizations: Optimizations, timeouts: Timeouts) -> Any:
                # acompare asks for one client per variant, in the order of `variants`
                name = next(handed)
                if clients[name].optimizations != optimizations:
                    raise RuntimeError(f"lane {name}: acompare asked for a client of another variant")
                return clients[name]

            workload = Workload.from_list([self.prompt.value], model=model)
            self.run_result = await acompare(
                workload,
                variants,
                backend=backend,
                repeats=n,
                interleave=True,
                on_event=self._on_event,
                on_result=self._on_result,
                stop=self._stop_event,
                progress=False,
                timeouts=timeouts,
                client_factory=lane_client,
            )
            self._set_status(self._describe_ab() + self._describe_prewarm())
        except asyncio.CancelledError:
            self._set_status(f"stopped: {len(self._results)} request(s) finished")
            raise
        except Exception as exc:
            self._set_status(
                f"<span style='color:#b00020'>{html.escape(type(exc).__name__)}: "
                f"{html.escape(str(exc))}</span>"
            )
        finally:
            for lane, view in self.lane_views.items():
                if view.figures(lane)["status"] == "streaming":
                    view.cancel(lane)
            for client in clients.values():  # acompare closes the ones it took; closing is idempotent
                with contextlib.suppress(Exception):
                    await client.aclose()
            self._end()
        return self.run_result

    async def _prewarm(self, lane: str, client: AsyncClient, backend: Backend, model: str) -> None:
        """`prewarm` for Run: the runner's warm-up (one untimed request through the lane's own client, so
        the server loads the model and a pooled client opens its connection outside the measurement)."""
        self._set_status(f"{html.escape(lane)}: warming up {html.escape(model)}…")
        record = await warm_up(client, model, backend)
        failed = str(record.get("error") or record.get("status"))
        self.prewarm[lane] = float(record["e2e_ms"]) if record.get("status") == "ok" else failed

    def static(self, charts: bool = True) -> StaticView:
        """The last run as Markdown + HTML: the toggles each lane ran with, each lane's final text and
        figures, the status line and (HTML, `charts`) the charts as SVG. An exported notebook shows no
        widget, so a notebook ends with `display(dash.static())`."""
        shown = list(self.views_box.children)
        ab = shown != [self.view]
        lanes = [("A", self.panel), ("B", self.panel_b)] if ab else [("output", self.panel)]
        status = self.status.value
        md = [f"**Dashboard** ({'A/B' if ab else 'Run'}): {re.sub(r'<[^>]+>', '', status)}", ""]
        rows = []
        for lane, panel in lanes:
            label = dashboard_optimizations(panel.value).label()
            md.append(f"- {lane}: `{label}`")
            rows.append(f"<li><b>{html.escape(lane)}</b>: <code>{html.escape(label)}</code></li>")
        statics = [view.static() for view in shown]
        md += ["", *(st.markdown for st in statics)]
        cells = "".join(f'<div style="flex:1 1 0;min-width:0">{st.html}</div>' for st in statics)
        body = (
            f'<div class="wb-dashboard-static"><p><b>Dashboard</b> ({"A/B" if ab else "Run"}): {status}</p>'
            f'<ul>{"".join(rows)}</ul><div style="display:flex;gap:8px">{cells}</div>'
        )
        if charts and self.charts is not None:
            with contextlib.suppress(Exception):  # no vl-convert: the texts and figures still show
                body += f"<div>{self.charts.static('svg').data}</div>"
        return StaticView("\n".join(md), body + "</div>")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live Dashboard plus `text/html` of `static()` (toggles, texts, figures, charts) for exports."""
        plain = f"Dashboard({re.sub(r'<[^>]+>', '', self.status.value)})"
        return with_html(super()._repr_mimebundle_(**kwargs), self.static().html, plain)

    def _ipython_display_(self) -> None:
        # Displayed under an id, so the static part is brought up to date after each run when no live
        # front end shows the Dashboard (nbclient, `workbench report`); see workbench.widgets._static.
        self._displays.show(self._repr_mimebundle_())

    def close(self) -> None:
        """Stop a run, close clients and the embedded simulator, close the widgets."""
        self.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._client is not None:
            with contextlib.suppress(RuntimeError):  # no loop to close it on: the process is ending
                asyncio.get_running_loop().create_task(self._client.aclose())
            self._client = None
        if self._sim is not None:
            with contextlib.suppress(Exception):
                self._sim.stop()
            self._sim = None
        if self.charts is not None:
            self.charts.close()
        super().close()

    # ---- internals ----

    def _idle_loop(self) -> asyncio.AbstractEventLoop:
        if self._busy:
            raise RuntimeError("a run is in progress: press Stop (or call stop()) first")
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "no running event loop: in a notebook this runs on the kernel's loop; in a script use "
                "`await dash.arun()` inside asyncio.run(...)"
            ) from None

    def _begin(self, *, lanes: list[str], total: int) -> None:
        # Synchronous, before the task starts: the buttons change at once and a Stop that comes before
        # the task's first step still finds the event.
        self._busy = True
        self.run_result = None
        self._stop_event = asyncio.Event()
        self._results = []
        self._lane_request = {}
        shown = [self.lane_view(lane) for lane in lanes]
        if list(self.views_box.children) != shown:
            self.views_box.children = shown
        self.progress.max = max(1, total)
        self.progress.value = 0
        self.run_button.disabled = self.ab_button.disabled = True
        self.stop_button.disabled = False
        self._set_status("running…")

    def _end(self) -> None:
        self._busy = False
        self.run_button.disabled = self.ab_button.disabled = False
        self.stop_button.disabled = True
        if self.charts is not None and self._results:
            with contextlib.suppress(Exception):
                self.charts.flush()
        if self.comm is not None and not any(v.frontend_live for v in self.views()):
            self._displays.refresh(self._repr_mimebundle_)

    def _client_for(self, backend: Backend, opts: Optimizations) -> AsyncClient:
        # One client per (backend, optimizations), kept across runs: a pooled connection and the caches
        # live in it, so a second Run can reuse the connection and hit the cache.
        key = (backend.url, backend.protocol, backend.api_key, opts)
        if self._client is None or self._client_key != key:
            self._client = make_client(backend, opts, Timeouts())
            self._client_key = key
        return self._client

    def _on_event(self, variant: str, request: Request, event: StreamEvent) -> None:
        view = self.lane_view(variant)
        if self._lane_request.get(variant) != request.id:
            self._lane_request[variant] = request.id
            # Started from its first event: the send stamp is not known here, so TTFT comes with the result.
            view.start(variant, request=request, live_ttft=False)
        view.push(variant, event)

    def _on_result(self, variant: str, result: StreamResult) -> None:
        view = self.lane_view(variant)
        if self._lane_request.get(variant) in (None, result.request_id):
            self._lane_request[variant] = result.request_id
            if view.figures(variant)["status"] != "streaming":
                # A cache hit or an error with no events: the lane still shows this request's end.
                view.start(variant, request=result.request, live_ttft=False)
            view.finish(variant, result)
        self._record(result)

    def _show_backend_fields(self) -> None:
        # URL and API key mean nothing for the embedded simulator: shown only for a server URL.
        hidden = "none" if self.backend_kind.value == SIMULATOR else None
        self.url.layout.display = hidden
        self._key_row.layout.display = hidden

    def _record(self, result: StreamResult) -> None:
        self._results.append(result)
        self.progress.value = min(self.progress.max, len(self._results))
        if self.charts is not None:
            with contextlib.suppress(Exception):  # a chart problem must not end the run
                # the chunks feed the token-arrival timeline (without them it says "no data")
                # (the latest streams: the timeline shows a few, and this runs after every result)
                self.charts.update(to_frame(self._results), chunks_frame(self._results[-6:]))

    def _set_status(self, text: str) -> None:
        self.status.value = text

    @staticmethod
    def _describe(result: StreamResult | None) -> str:
        if result is None:
            return "stopped"
        m = result.metrics
        ttft = "–" if m.ttft_ms is None else f"{m.ttft_ms:.0f} ms"
        tps = "–" if m.tokens_per_s is None else f"{m.tokens_per_s:.1f}"
        err = (
            f", {html.escape(result.error_kind or '')}: {html.escape(result.error or '')}"
            if result.error
            else ""
        )
        return (
            f"{result.status}: TTFT {ttft}, {tps} tok/s, {m.output_tokens} tokens, cache {result.cache}{err}"
        )

    def _describe_prewarm(self) -> str:
        parts = [
            f"{lane}: {ms:.0f} ms" if isinstance(ms, float) else f"{lane}: failed ({ms})"
            for lane, ms in self.prewarm.items()
        ]
        return f" · warm-up (untimed) {html.escape(', '.join(parts))}" if parts else ""

    def _describe_ab(self) -> str:
        if self.run_result is None:
            return "stopped"
        frame: pl.DataFrame = self.run_result.frame
        if frame.is_empty() or "variant" not in frame.columns:
            return "A/B: no results"
        parts = [
            _describe_variant(str(variant), group)
            for (variant,), group in frame.group_by("variant", maintain_order=True)
        ]
        warn = "; ".join(self.run_result.meta.get("warnings", []))
        return "A/B done — " + " · ".join(parts) + (f" ({html.escape(warn)})" if warn else "")


def _median(frame: pl.DataFrame, column: str, fmt: str) -> str:
    med = frame[column].drop_nulls().median() if column in frame.columns else None
    return format(float(med), fmt) if isinstance(med, int | float) else "–"


def _describe_variant(variant: str, group: pl.DataFrame) -> str:
    """One variant's A/B figures, streamed requests and cache hits apart (a replay's rate is not a
    streaming rate: pooled, it makes a median that describes neither)."""
    ok = group.filter(pl.col("status") == "ok")
    text = f"{html.escape(variant)}: {len(ok)}/{len(group)} ok"
    if "cache" in ok.columns:
        is_hit = pl.col("cache").cast(pl.String).is_in(list(CACHE_HITS))
        streamed, hits = ok.filter(~is_hit), ok.filter(is_hit)
    else:
        streamed, hits = ok, ok.clear()
    if len(streamed):
        text += (
            f", streamed {len(streamed)}: median TTFT {_median(streamed, 'ttft_ms', '.0f')} ms, "
            f"{_median(streamed, 'tokens_per_s', '.1f')} tok/s, TPOT {_median(streamed, 'tpot_ms', '.2f')} ms"
        )
    if len(hits):
        text += f", cache hits {len(hits)}: median TTFT {_median(hits, 'ttft_ms', '.0f')} ms (replayed)"
    return text
