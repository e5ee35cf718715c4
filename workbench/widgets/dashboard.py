"""`Dashboard`: prompt, backend, toggles, Run / A-B / Stop, live stream views and charts in one widget.

Runs are asyncio tasks on the kernel's own event loop (the cell returns at once), so a Stop click is
handled while a stream is running: it sets the run's stop event and cancels the streams in flight. The A/B
logic is `workbench.experiments.acompare` (interleaved variants, same prompts, N repeats); this module only
wires its `on_event` / `on_result` hooks to the widgets.

The API key field is a tiny anywidget whose value travels to the kernel in a custom message and is kept in
a Python attribute only: it is never a synced trait, so it is not in the widget state a notebook saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import Any

import anywidget
import ipywidgets as w
import polars as pl
import traitlets

from workbench._exceptions import WorkbenchError
from workbench._types import Backend, Request, StreamEvent, StreamResult, Timeouts
from workbench.client import AsyncClient
from workbench.experiments import RunResult, Workload, acompare
from workbench.experiments.clients import make_client
from workbench.metrics.frames import to_frame
from workbench.optimizations import Optimizations
from workbench.simulator import Simulator
from workbench.widgets.live_charts import LiveCharts
from workbench.widgets.panel import OptimizationPanel
from workbench.widgets.stream_view import StreamView

__all__ = ["Dashboard", "SecretField"]

SIMULATOR = "simulator"

_SECRET_ESM = """
function render({ model, el }) {
  const input = document.createElement("input");
  input.type = "password";
  input.autocomplete = "off";
  input.placeholder = model.get("placeholder");
  const note = document.createElement("span");
  note.style.marginLeft = "6px";
  const paint = () => {
    note.textContent = model.get("has_value") ? "key set (kept in the kernel only)" : "";
  };
  input.addEventListener("change", () => {
    model.send({ t: "secret", value: input.value });
    input.value = "";
  });
  model.on("change:has_value", paint);
  paint();
  el.append(input, note);
}
export default { render };
"""


class SecretField(anywidget.AnyWidget):
    """A password box; its value reaches the kernel in a custom message only (never saved in the notebook)."""

    _esm = _SECRET_ESM
    has_value = traitlets.Bool(False).tag(sync=True)
    placeholder = traitlets.Unicode("API key (optional)").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        self._secret: str | None = None
        super().__init__(**kwargs)
        self.on_msg(self._on_front_msg)

    @property
    def value(self) -> str | None:
        return self._secret

    @value.setter
    def value(self, secret: str | None) -> None:
        self._secret = secret or None
        self.has_value = self._secret is not None

    def _on_front_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("t") == "secret":
            self.value = str(content.get("value") or "")

    def __repr__(self) -> str:
        return f"SecretField(has_value={self.has_value})"


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
        **kwargs: Any,
    ) -> None:
        self._sim: Simulator | None = None
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

        self.prompt = w.Textarea(
            value=prompt, description="Prompt", layout=w.Layout(width="100%", height="70px")
        )
        self.backend_kind = w.Dropdown(
            options=[("embedded simulator", SIMULATOR), ("server URL", "url")],
            value=SIMULATOR,
            description="Backend",
        )
        self.url = w.Text(placeholder="http://127.0.0.1:11434", description="URL")
        self.protocol = w.Dropdown(options=["auto", "ollama", "openai"], value="auto", description="Protocol")
        self.api_key = SecretField()
        if backend is not None:
            be = Backend(backend) if isinstance(backend, str) else backend
            self.backend_kind.value = "url"
            self.url.value = be.url
            self.protocol.value = be.protocol
            self.api_key.value = be.api_key
        # empty: the first model the server lists, asked when a run starts
        self.model = w.Text(value=model or "", placeholder="first listed by the server", description="Model")
        self.panel = OptimizationPanel(optimizations, title="A: optimizations for Run and variant A")
        self.panel_b = OptimizationPanel(
            optimizations_b if optimizations_b is not None else Optimizations.all(), title="B: variant B"
        )
        self.repeats = w.BoundedIntText(value=repeats, min=1, max=1000, description="Repeats")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.ab_button = w.Button(description="A/B", button_style="info", icon="balance-scale")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.run_button.on_click(lambda _b: self.run())
        self.ab_button.on_click(lambda _b: self.run_ab())
        self.stop_button.on_click(lambda _b: self.stop())
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Progress")
        self.status = w.HTML("ready")
        self.view = StreamView(lanes=["output"], optimizations=self.panel.value)
        self.panel.on_change(self.view.configure)

        self.charts: LiveCharts | None = LiveCharts() if charts else None
        chart_box: list[Any] = [self.charts.widget] if self.charts is not None else []

        backend_box = w.VBox(
            [
                w.HBox([self.backend_kind, self.model]),
                w.HBox([self.url, self.protocol]),
                w.HBox([w.Label("API key"), self.api_key]),
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
                self.view,
                *chart_box,
            ],
            **kwargs,
        )

    # ---- configuration ----

    def backend(self) -> Backend:
        """The chosen backend; the embedded simulator is started on first use."""
        if self.backend_kind.value == SIMULATOR:
            if self._sim is None:
                self._sim = Simulator().start()
            return Backend(self._sim.url, protocol="openai", name="simulator")
        url = self.url.value.strip()
        return Backend(url, protocol=self.protocol.value, api_key=self.api_key.value)

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
        self.view.cancel_all()
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
            opts = self.panel.value
            self.view.configure(opts)
            client = self._client_for(backend, opts)
            if not self.model.value.strip():
                self.model.value = await client.default_model()
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
            self._set_status(self._describe(result))
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
        variants = {"A": self.panel.value, "B": self.panel_b.value}
        self.view.configure(self.panel.value)  # the view's own switches: variant A decides how the UI updates
        try:
            workload = Workload.from_list([self.prompt.value], model=self.model.value.strip() or None)
            self.run_result = await acompare(
                workload,
                variants,
                backend=await self.abackend(),
                repeats=n,
                interleave=True,
                on_event=self._on_event,
                on_result=self._on_result,
                stop=self._stop_event,
                progress=False,
            )
            self._set_status(self._describe_ab())
        except asyncio.CancelledError:
            self._set_status(f"stopped: {len(self._results)} request(s) finished")
            raise
        except Exception as exc:
            self._set_status(
                f"<span style='color:#b00020'>{html.escape(type(exc).__name__)}: "
                f"{html.escape(str(exc))}</span>"
            )
        finally:
            for lane in self.view.lanes:
                if self.view.figures(lane)["status"] == "streaming":
                    self.view.cancel(lane)
            self._end()
        return self.run_result

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
        if self.view.lanes != lanes:
            self.view.set_lanes(lanes)
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

    def _client_for(self, backend: Backend, opts: Optimizations) -> AsyncClient:
        # One client per (backend, optimizations), kept across runs: a pooled connection and the caches
        # live in it, so a second Run can reuse the connection and hit the cache.
        key = (backend.url, backend.protocol, backend.api_key, opts)
        if self._client is None or self._client_key != key:
            self._client = make_client(backend, opts, Timeouts())
            self._client_key = key
        return self._client

    def _on_event(self, variant: str, request: Request, event: StreamEvent) -> None:
        if self._lane_request.get(variant) != request.id:
            self._lane_request[variant] = request.id
            # Started from its first event: the send stamp is not known here, so TTFT comes with the result.
            self.view.start(variant, request=request, live_ttft=False)
        self.view.push(variant, event)

    def _on_result(self, variant: str, result: StreamResult) -> None:
        if self._lane_request.get(variant) in (None, result.request_id):
            self._lane_request[variant] = result.request_id
            if self.view.figures(variant)["status"] != "streaming":
                # A cache hit or an error with no events: the lane still shows this request's end.
                self.view.start(variant, request=result.request, live_ttft=False)
            self.view.finish(variant, result)
        self._record(result)

    def _record(self, result: StreamResult) -> None:
        self._results.append(result)
        self.progress.value = min(self.progress.max, len(self._results))
        if self.charts is not None:
            with contextlib.suppress(Exception):  # a chart problem must not end the run
                self.charts.update(to_frame(self._results))

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

    def _describe_ab(self) -> str:
        if self.run_result is None:
            return "stopped"
        frame: pl.DataFrame = self.run_result.frame
        if frame.is_empty() or "variant" not in frame.columns:
            return "A/B: no results"
        parts = []
        for (variant,), group in frame.group_by("variant", maintain_order=True):
            ok = group.filter(pl.col("status") == "ok")
            med = ok["ttft_ms"].drop_nulls().median() if "ttft_ms" in ok.columns else None
            shown = f"{float(med):.0f} ms" if isinstance(med, int | float) else "–"
            parts.append(f"{variant}: {len(ok)}/{len(group)} ok, median TTFT {shown}")
        warn = "; ".join(self.run_result.meta.get("warnings", []))
        return "A/B done — " + " · ".join(parts) + (f" ({html.escape(warn)})" if warn else "")
