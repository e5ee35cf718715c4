"""StreamView and Dashboard in a real ipykernel: IOPub traffic, idle return, Stop mid-stream.

The simulator runs in the test process (a real HTTP server on 127.0.0.1); the kernel streams from it with
`workbench.client.AsyncClient` as a task on its own event loop, as it does in JupyterLab.
"""

from __future__ import annotations

import json
import time
import zlib

import pytest
from kernel_harness import Kernel

from workbench.simulator import Profile, Simulator

pytestmark = pytest.mark.slow

TOKENS = 20_000
RATE = 5_000  # tokens/s from the simulator


def test_20k_tokens_at_5k_per_s_stay_under_60_messages_a_second(kernel: Kernel) -> None:
    profile = Profile(ttft_ms=30.0, token_delay_ms=1000 / RATE, jitter=0.0)
    with Simulator(profile) as sim:
        view_id = kernel.run(f"""
import asyncio
from workbench._types import Backend, Request
from workbench.client import AsyncClient
from workbench.optimizations import Optimizations
from workbench.widgets import StreamView
opts = Optimizations(coalesce_ui=True, incremental_render=True, fast_parse=True)
view = StreamView(optimizations=opts)
client = AsyncClient(Backend({sim.url!r}, protocol="openai"), optimizations=opts)
req = Request.chat("sim-small", "stream a lot", max_tokens={TOKENS})
task = asyncio.ensure_future(view.arun(client, req))
print(view.model_id, end="")
""").strip()
        t_submit = time.monotonic()
        out = kernel.run(
            "import json\nres = await task\n"
            "print(json.dumps({'status': res.status, 'n': len(res.text), 'same': res.text == view.text(),"
            " 'tokens': res.metrics.output_tokens, 'flushes': view.flushes}))",
            timeout=90,
        )
        t_idle = time.monotonic()
    info = json.loads(out)
    assert info["status"] == "ok" and info["same"] and info["tokens"] == TOKENS

    msgs = kernel.log.comm_msgs(view_id)
    assert msgs, "no widget messages reached IOPub"
    span = msgs[-1][0] - msgs[0][0]
    assert span > 0.5 * TOKENS / RATE * 0.5  # the stream really took seconds, it was not one burst
    rate = len(msgs) / max(span, 1e-3)
    print(
        f"{len(msgs)} comm messages in {span:.2f} s = {rate:.1f}/s; idle {t_idle - t_submit:.2f} s after submit"
    )
    assert rate <= 60, f"{len(msgs)} comm messages in {span:.2f} s = {rate:.0f}/s"
    kinds = [m["content"]["data"]["method"] for _, m in msgs]
    assert kinds.count("update") <= 2 and kinds[-1] == "update"  # deltas are custom; one final sync
    final_state = msgs[-1][1]["content"]["data"]["state"]
    assert len(final_state["_texts"]["output"]) == info["n"]  # the saved state holds the exact final text
    assert final_state["_lanes"][0]["status"] == "done"
    assert t_idle - t_submit < 60


def _send_click(kernel: Kernel, button_id: str) -> float:
    msg = kernel.kc.session.msg(
        "comm_msg", {"comm_id": button_id, "data": {"method": "custom", "content": {"event": "click"}}}
    )
    kernel.kc.shell_channel.send(msg)
    return time.monotonic()


def test_dashboard_stop_click_ends_the_stream_within_200_ms(kernel: Kernel) -> None:
    # An endless-looking stream: ~100,000 tokens at 200 tokens/s.
    profile = Profile(
        ttft_ms=20.0, token_delay_ms=5.0, jitter=0.0, default_tokens_min=100_000, default_tokens_max=100_000
    )
    with Simulator(profile) as sim:
        ids = kernel.run(f"""
import json
from workbench._types import Backend
from workbench.optimizations import Optimizations
from workbench.widgets import Dashboard
dash = Dashboard(backend=Backend({sim.url!r}, protocol="openai"), charts=False,
                 optimizations=Optimizations(coalesce_ui=True, incremental_render=True, early_cancel=True))
run_task = dash.run()
print(json.dumps([dash.stop_button.model_id, dash.view.model_id]), end="")
""")
        stop_id, view_id = json.loads(ids)
        # Let it stream for a while, then click Stop through the comm, as the browser would.
        kernel.drain(timeout=1.0)
        deltas_before = [
            m for _, m in kernel.log.comm_msgs(view_id) if m["content"]["data"]["method"] == "custom"
        ]
        assert len(deltas_before) >= 5, "the stream did not start"
        t_click = _send_click(kernel, stop_id)
        t_cancelled = None
        deadline = t_click + 5
        while t_cancelled is None and time.monotonic() < deadline:
            kernel.drain(timeout=0.02)
            for t, m in kernel.log.comm_msgs(view_id, since=t_click):
                state = m["content"]["data"].get("state", {})
                if any(ln.get("status") == "cancelled" for ln in state.get("_lanes", [])):
                    t_cancelled = t
                    break
        assert t_cancelled is not None, "no cancelled state after the Stop click"
        print(f"Stop click -> cancelled state on IOPub: {1000 * (t_cancelled - t_click):.0f} ms")
        assert t_cancelled - t_click <= 0.2, f"Stop took {1000 * (t_cancelled - t_click):.0f} ms"
        out = kernel.run(
            "import asyncio\nres = await asyncio.wait_for(run_task, 5)\n"
            "print(json.dumps({'status': dash.results['status'].to_list(), 'n': len(dash.view.text()),"
            " 'running': dash.running}))",
            timeout=30,
        )
    info = json.loads(out)
    assert info["status"] == ["cancelled"] and 0 < info["n"] and not info["running"]
    after = [
        m
        for t, m in kernel.log.comm_msgs(view_id, since=t_cancelled + 0.05)
        if m["content"]["data"]["method"] == "custom"
    ]
    assert after == [], "deltas kept coming after Stop"


def _send_custom(kernel: Kernel, comm_id: str, content: dict[str, object]) -> None:
    """A custom message from the front end to the kernel, as stream_view.js's `model.send` makes it."""
    msg = kernel.kc.session.msg(
        "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
    )
    kernel.kc.shell_channel.send(msg)


def _stream_as_front_end(kernel: Kernel, view_id: str, code: str, *, ack: bool) -> tuple[str, str]:
    """Run `code` (which awaits a stream into the view) while this process plays stream_view.js's part:
    rebuild the text from the deltas, check the end against its UTF-16 length + CRC-32, and ack it.
    Returns (the text the front end stored, the cell's stdout)."""
    msg_id = kernel.submit(code)
    seen, text, stored = 0, "", ""
    deadline = time.monotonic() + 60
    idle = False
    while not idle and time.monotonic() < deadline:
        kernel.drain(timeout=0.02)
        idle = any(
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id
            for _, m in kernel.log.msgs
        )
        msgs = kernel.log.comm_msgs(view_id)
        for _, m in msgs[seen:]:
            data = m["content"]["data"]
            c = data.get("content", {})
            if c.get("t") == "start":
                text = ""
            elif c.get("t") == "d":
                d = c["lanes"]["output"]
                assert d["at"] == len(text.encode("utf-16-le")) // 2, "a delta did not line up"
                text += d["s"]
            elif c.get("t") == "end":
                units = text.encode("utf-16-le")[: 2 * c["at"]].decode("utf-16-le") + c["s"]
                raw = units.encode("utf-16-le")
                assert (len(raw) // 2, zlib.crc32(raw)) == (c["n"], c["h"]), "the end's check failed"
                stored = units
                if ack:
                    _send_custom(
                        kernel, view_id, {"t": "ack", "lane": "output", "seq": c["seq"], "h": c["h"]}
                    )
        seen = len(msgs)
    assert idle, "the cell did not finish"
    out = "".join(
        m["content"]["text"]
        for _, m in kernel.log.msgs
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
    )
    errors = [
        m
        for _, m in kernel.log.msgs
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "error"
    ]
    assert not errors, errors[0]["content"]["traceback"]
    return stored, out


def test_live_front_end_acks_the_end_so_the_text_crosses_once(kernel: Kernel) -> None:
    tokens = 5_000
    profile = Profile(ttft_ms=20.0, token_delay_ms=1000 / RATE, jitter=0.0)
    with Simulator(profile) as sim:
        view_id = kernel.run(f"""
import asyncio, json
from workbench._types import Backend, Request
from workbench.client import AsyncClient
from workbench.optimizations import Optimizations
from workbench.widgets import StreamView
opts = Optimizations(coalesce_ui=True, incremental_render=True)
view = StreamView(optimizations=opts)
client = AsyncClient(Backend({sim.url!r}, protocol="openai"), optimizations=opts)
print(view.model_id, end="")
""").strip()
        _send_custom(kernel, view_id, {"t": "hello"})  # what stream_view.js's initialize says
        report = (
            "view.ack_grace_s = {grace}\n"
            "res = await view.arun(client, Request.chat('sim-small', 'go', max_tokens={n}))\n"
            # Until the end is settled: by the ack (which cancels the fallback for good) or by the fallback.
            "for _ in range(200):\n"
            "    if not view._pending_ends: break\n"
            "    await asyncio.sleep(0.05)\n"
            "st = view.get_state()\n"
            "print(json.dumps({{'text': view.text(), 'synced': st['_texts']['output'],"
            " 'status': st['_lanes'][0]['status'], 'fallbacks': view.fallback_syncs}}))"
        )
        # 1) The ack arrives while the cell still awaits: ipykernel dispatches comm messages concurrently.
        #    (A 10 s grace so a loaded machine's slow ack is not mistaken for a missing one.)
        stored, out = _stream_as_front_end(kernel, view_id, report.format(n=tokens, grace=10.0), ack=True)
        info = json.loads(out)
        assert info["synced"] == info["text"] == stored and len(stored) > 0
        assert info["status"] == "done" and info["fallbacks"] == 0
        msgs = kernel.log.comm_msgs(view_id)
        kinds = [m["content"]["data"]["method"] for _, m in msgs]
        assert kinds.count("update") == 0, "the text was sent again after the deltas"
        nbytes = sum(len(json.dumps(m["content"], ensure_ascii=False).encode()) for _, m in msgs)
        text_bytes = len(stored.encode())
        print(
            f"live view: {len(msgs)} comm messages, {nbytes:,} bytes = {nbytes / text_bytes:.2f} x the text"
        )
        assert nbytes <= 1.2 * text_bytes + 250 * len(msgs)

        # 2) A front end that stops answering: the full sync follows after the grace, with the exact text.
        kernel.log.msgs.clear()
        stored, out = _stream_as_front_end(kernel, view_id, report.format(n=500, grace=0.3), ack=False)
        info = json.loads(out)
        # fallback_syncs counts only syncs sent because the grace ran out (not an immediate headless sync).
        assert info["synced"] == info["text"] == stored and info["fallbacks"] == 1
        updates = [
            (t, m) for t, m in kernel.log.comm_msgs(view_id) if m["content"]["data"]["method"] == "update"
        ]
        assert len(updates) == 1 and updates[0][1]["content"]["data"]["state"]["_texts"]["output"] == stored
