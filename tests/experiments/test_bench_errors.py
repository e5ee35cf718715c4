"""`workbench bench` against servers we did not write (the stdlib's http.server) that refuse requests: the
installed command says in its first lines that requests failed and why (error kind, HTTP status, hint),
exits non-zero when none succeeded, and the Markdown/HTML reports and the saved results carry the errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from workbench.experiments import RunResult

WORKBENCH = Path(sys.executable).parent / "workbench"  # the installed console script of this venv
EMPTY_400_HINT = "returned HTTP 400 with an empty body: the server rejected the request"

Policy = Callable[
    [str, str, int], tuple[int, bytes, str]
]  # (method, path, POST number) -> status, body, type


def _sse_ok() -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in ("Hel", "lo")
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _server(policy: Policy) -> Iterator[str]:
    posts = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            with lock:
                if self.command == "POST":
                    posts[0] += 1
                number = posts[0]
            status, body, ctype = policy(self.command, self.path, number)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def refuses_everything() -> Iterator[str]:
    """400 with an empty body to every request, the model list included."""
    yield from _server(lambda method, path, n: (400, b"", "text/plain"))


@pytest.fixture
def lists_a_model_refuses_posts() -> Iterator[str]:
    def policy(method: str, path: str, n: int) -> tuple[int, bytes, str]:
        if method == "GET" and path == "/v1/models":
            return 200, b'{"object":"list","data":[{"id":"tiny","object":"model"}]}', "application/json"
        return 400, b"", "text/plain"

    yield from _server(policy)


@pytest.fixture
def refuses_every_other_post() -> Iterator[str]:
    def policy(method: str, path: str, n: int) -> tuple[int, bytes, str]:
        if n % 2:
            return 400, b'{"error":{"message":"prompt is too long for this model"}}', "application/json"
        return 200, _sse_ok(), "text/event-stream"

    yield from _server(policy)


@pytest.fixture
def refuses_every_second_post() -> Iterator[str]:
    """The first request streams (the demo needs one to show live), then every other one is refused."""

    def policy(method: str, path: str, n: int) -> tuple[int, bytes, str]:
        if n % 2 == 0:
            return 400, b"", "text/plain"
        return 200, _sse_ok(), "text/event-stream"

    yield from _server(policy)


def bench(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(WORKBENCH),
        "bench",
        "--url",
        url,
        "--protocol",
        "openai",
        "--limit",
        "4",
        "--variants",
        "baseline",
        "--warmup",
        "0",
        "--no-progress",
        "--no-charts",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_every_request_refused_exits_non_zero_and_says_why_first(
    refuses_everything: str, tmp_path: Path
) -> None:
    proc = bench(refuses_everything, tmp_path, "--model", "m")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("workbench bench: FAILED: all 4 requests failed: 4× StatusError (HTTP 400)"), (
        first
    )
    assert EMPTY_400_HINT in first and "check --model" in first and "--protocol" in first
    assert "| StatusError | 400 | 4 |" in proc.stdout  # the grouped table, not a table of dashes
    assert "TTFT p50" not in proc.stdout
    assert "every request failed" in proc.stderr
    md = (tmp_path / "report.md").read_text()
    assert "### Errors" in md and md.index("### Errors") < md.index("### baseline")
    assert "All 4 requests failed" in md and EMPTY_400_HINT in md
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Errors</h2>" in page and EMPTY_400_HINT in page and "StatusError" in page
    # notebooks: the saved run groups its failures the same way
    errors = RunResult.load(tmp_path).errors
    assert errors.select("error_kind", "http_status", "count").rows() == [("StatusError", 400, 4)]
    assert EMPTY_400_HINT in errors.item(0, "first_error")


def test_refused_model_list_without_model_says_to_pass_one(refuses_everything: str, tmp_path: Path) -> None:
    proc = bench(refuses_everything, tmp_path)
    assert proc.returncode != 0
    assert "GET " + refuses_everything + "/v1/models returned HTTP 400 with an empty body" in proc.stderr
    assert "pass the model name (--model)" in proc.stderr


def test_listed_model_but_refused_posts(lists_a_model_refuses_posts: str, tmp_path: Path) -> None:
    proc = bench(lists_a_model_refuses_posts, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("workbench bench: FAILED: all 4 requests failed")
    assert "POST " + lists_a_model_refuses_posts + "/v1/chat/completions " + EMPTY_400_HINT in proc.stdout
    assert RunResult.load(tmp_path).frame.get_column("model").unique().to_list() == ["tiny"]


def test_partly_failed_bench_counts_failures_above_the_table(
    refuses_every_other_post: str, tmp_path: Path
) -> None:
    proc = bench(refuses_every_other_post, tmp_path, "--model", "m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("workbench bench: 2 of 4 requests failed: 2× StatusError (HTTP 400)"), lines[0]
    assert "returned HTTP 400: prompt is too long for this model" in lines[0]
    out = proc.stdout
    assert out.index("### Errors") < out.index("TTFT p50")  # the reason comes before the measurements
    assert "| Error rate | 50.0% |" in out
    md = (tmp_path / "report.md").read_text()
    assert "2 of 4 requests failed" in md and "No request succeeded" not in md
    errors = RunResult.load(tmp_path).errors
    assert errors.select("error_kind", "http_status", "count", "share_pct").rows() == [
        ("StatusError", 400, 2, 50.0)
    ]
    # `workbench compare` names the failures of either run before its factors
    cmp = subprocess.run(
        [str(WORKBENCH), "compare", str(tmp_path), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert cmp.returncode == 0, cmp.stderr
    assert "- errors in A: 2 of 4 requests failed: 2× StatusError (HTTP 400)" in cmp.stdout
    assert cmp.stdout.index("- errors in B:") < cmp.stdout.index("TTFT p50")


def test_partly_failed_demo_says_how_many_and_why_before_its_table(
    refuses_every_second_post: str, tmp_path: Path
) -> None:
    cmd = [
        str(WORKBENCH),
        "demo",
        "--url",
        refuses_every_second_post,
        "--model",
        "m",
        "--protocol",
        "openai",
        "--requests",
        "2",
        "--rounds",
        "1",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # some requests worked: the comparison stands
    out = proc.stdout
    line = next(ln for ln in out.splitlines() if "requests failed" in ln)
    assert line.startswith("workbench demo: 2 of 4 requests failed: 2× StatusError (HTTP 400)"), line
    assert EMPTY_400_HINT in line and "check --model" in line
    assert out.index(line) < out.index("TTFT p50")


def test_error_summary_groups_by_kind_and_status_most_common_first() -> None:
    from workbench.metrics import error_summary

    refused = "POST http://h/v1/chat/completions returned HTTP 400 with an empty body: {} (check --model)"
    rows = [
        ("ok", None, None, "a"),
        ("error", "IdleTimeout", "http://h: no chunk for 5 s", "a"),
        ("error", "StatusError", refused.format("first"), "b"),
        ("cancelled", "CancelledError", "stopped", "a"),  # a stop on request is not a failure
        ("error", "StatusError", refused.format("second"), "a"),
        ("error", "NotFoundError", "POST http://h/v1/chat/completions returned HTTP 404: no model", "b"),
        ("error", "StatusError", "POST http://h/v1/chat/completions returned HTTP 503: busy", "b"),
        ("error", "StatusError", refused.format("third"), "b"),
    ]
    frame = pl.DataFrame(rows, schema=["status", "error_kind", "error", "variant"], orient="row")
    got = error_summary(frame)
    assert got.select("error_kind", "http_status", "count", "variants").rows() == [
        ("StatusError", 400, 3, "b, a"),
        ("IdleTimeout", None, 1, "a"),  # ties keep the order the first of each failed in
        ("NotFoundError", 404, 1, "b"),
        ("StatusError", 503, 1, "b"),
    ]
    assert got.item(0, "first_error") == refused.format("first")
    assert got.item(0, "share_pct") == pytest.approx(100 * 3 / 8)
    assert error_summary(frame.filter(pl.col("status") != "error")).height == 0
