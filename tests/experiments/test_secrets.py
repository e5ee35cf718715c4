"""No secret saved anywhere: planted keys (--api-key, environment, URL credentials, lab token) are looked for
with grep in everything a run leaves behind (results folder, logs, a saved notebook, process command lines)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from workbench._exceptions import ConfigError, NotFoundError
from workbench._secrets import redact_argv, redact_url, scrub
from workbench._types import Backend, Request
from workbench.client import Client
from workbench.client._shared import request_headers
from workbench.simulator import Profile, Simulator

# Planted secrets: distinct, long and unlikely, so a grep hit can only be a leak.
ARG_KEY = "sk-ARGV-5f1c9e7d2b3a4c6e8f0a1b2c"
ENV_KEY = "sk-ENVV-9a8b7c6d5e4f3a2b1c0d9e8f"
URL_KEY = "sk-URLL-1a2b3c4d5e6f7a8b9c0d1e2f"
PLANTED = (ARG_KEY, ENV_KEY, URL_KEY)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class KeyGate:
    """ASGI middleware: 401 unless the bearer key is accepted, so a passing run proves the key was sent."""

    def __init__(self, app: Any, accepted: set[str]) -> None:
        self.app = app
        self.accepted = accepted
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            self.seen.append(auth)
            if auth.removeprefix("Bearer ") not in self.accepted and not auth.startswith("Basic "):
                start = {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
                await send(start)
                await send({"type": "http.response.body", "body": b'{"error":{"message":"bad key"}}'})
                return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def gated() -> Iterator[tuple[Simulator, KeyGate]]:
    sim = Simulator(Profile.instant(seed=4))
    gate = KeyGate(sim._app, {ARG_KEY, ENV_KEY})
    sim._app = gate  # type: ignore[assignment]
    with sim:
        yield sim, gate


def leaks(text: str) -> list[str]:
    return [k for k in PLANTED if k in text]


def grep_tree(root: Path) -> dict[str, list[str]]:
    """grep -r for every planted key: {file: keys found}. Parquet is compressed, so it is decoded too."""
    found: dict[str, list[str]] = {}
    for p in root.rglob("*"):
        if p.is_file():
            text = p.read_bytes().decode("utf-8", "replace")
            if p.suffix == ".parquet":
                text += repr(pl.read_parquet(p).to_dicts())
            hits = leaks(text)
            if hits:
                found[str(p)] = hits
    return found


# ---- units -------------------------------------------------------------------------------------------


def test_backend_takes_credentials_out_of_the_url() -> None:
    b = Backend(f"https://alice:{URL_KEY}@api.example.com/v1/", protocol="openai", name="")
    assert b.url == "https://api.example.com/v1" and b.label == b.url
    assert b.auth == ("alice", URL_KEY)
    for shown in (repr(b), str(b), b.label, repr(Client(b))):
        assert not leaks(shown), shown
    headers = request_headers(b, None)
    assert headers["Authorization"].startswith("Basic ")  # sent as httpx would have sent it
    keyed = Backend(f"https://alice:{URL_KEY}@api.example.com", api_key=ARG_KEY)
    assert request_headers(keyed, None)["Authorization"] == f"Bearer {ARG_KEY}"  # an api_key wins
    assert not leaks(repr(keyed))
    with pytest.raises(ConfigError) as err:
        Backend(f"ftp://alice:{URL_KEY}@host")
    assert not leaks(str(err.value))
    # percent-encoded credentials are decoded for the header, as a browser would
    assert Backend("http://a%40b:p%3Aw@h:1").auth == ("a@b", "p:w")


def test_redaction_of_command_lines_and_saved_dicts() -> None:
    argv = [
        "bench",
        "--api-key",
        ARG_KEY,
        f"--url=http://u:{URL_KEY}@h:1/v1",
        f"--token={ENV_KEY}",
        "--limit",
        "2",
    ]
    out = redact_argv(argv)
    assert not leaks(" ".join(out))
    assert out[:3] == ["bench", "--api-key", "***"] and out[-2:] == ["--limit", "2"]
    assert redact_url(f"see redis://:{URL_KEY}@10.0.0.1:6379/0 now") == "see redis://***@10.0.0.1:6379/0 now"
    saved = scrub(
        {
            "argv": argv,
            "server": {"url": f"http://u:{URL_KEY}@h"},
            "api_key": ENV_KEY,
            "max_tokens": 5,
            "tokens_source": "usage",
        }
    )
    assert not leaks(orjson.dumps(saved).decode())
    assert saved["max_tokens"] == 5 and saved["tokens_source"] == "usage"  # figures are not secrets


def test_logs_and_errors_carry_no_url_credentials(
    gated: tuple[Simulator, KeyGate], caplog: pytest.LogCaptureFixture
) -> None:
    sim, gate = gated
    host = sim.url.split("://", 1)[1]
    caplog.set_level(logging.DEBUG)  # httpx INFO request lines and httpcore DEBUG traces
    with Client(Backend(f"http://alice:{URL_KEY}@{host}", protocol="openai")) as client:
        r = client.run(Request.chat("sim-small", "hello", max_tokens=4))
        assert r.status == "ok" and not leaks(repr(r)) and not leaks(r.backend)
        with pytest.raises(NotFoundError) as err:
            client.run(Request.chat("no-such-model", "hello", max_tokens=4))
    assert gate.seen[-1].startswith("Basic ")  # the credential did reach the server, in a header
    assert "HTTP Request: POST http://" in caplog.text  # the log we look at is really there
    assert not leaks(caplog.text) and not leaks(str(err.value))


# ---- a bench run -------------------------------------------------------------------------------------


def _bench_args(sim: Simulator, out: Path, *, api_key: bool) -> list[str]:
    host = sim.url.split("://", 1)[1]
    args = [
        "bench",
        "--url",
        f"http://alice:{URL_KEY}@{host}",
        "--protocol",
        "openai",
        "--model",
        "sim-small",
    ]
    args += ["--synthetic", "3", "--output-tokens", "4", "--variants", "baseline,all", "--repeats", "1"]
    args += ["--warmup", "0", "--no-progress", "--no-charts", "--out", str(out)]
    return args + (["--api-key", ARG_KEY] if api_key else [])


@pytest.mark.slow
def test_a_bench_run_saves_no_secret(gated: tuple[Simulator, KeyGate], tmp_path: Path) -> None:
    sim, gate = gated
    workbench = Path(sys.executable).parent / "workbench"
    env = {**os.environ, "OPENAI_API_KEY": ENV_KEY, "PYTHONWARNINGS": "always"}
    env.pop("WORKBENCH_API_KEY", None)
    # 1. the installed command, key on the command line (and one in the environment, unused)
    first = subprocess.run(
        [str(workbench), *_bench_args(sim, tmp_path / "argv", api_key=True)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Bearer {ARG_KEY}" in gate.seen  # the key was used...
    # 2. the key from the environment only, with every logger at DEBUG (httpx, httpcore, ours)
    code = (
        "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
        "from workbench.cli import main; sys.argv = ['workbench', *sys.argv[1:]]; main()"
    )
    second = subprocess.run(
        [sys.executable, "-c", code, *_bench_args(sim, tmp_path / "env", api_key=False)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Bearer {ENV_KEY}" in gate.seen
    assert "HTTP Request: POST http://" in second.stderr  # the httpx INFO log was captured
    (tmp_path / "logs").mkdir()
    for name, proc in (("argv", first), ("env", second)):
        (tmp_path / "logs" / f"{name}.stdout").write_text(proc.stdout)
        (tmp_path / "logs" / f"{name}.stderr").write_text(proc.stderr)
    # ...and is nowhere in what the runs left behind (grep -r over results and logs)
    assert grep_tree(tmp_path) == {}
    saved = orjson.loads((tmp_path / "argv" / "results.json").read_bytes())
    argv = saved["config"]["argv"]
    assert argv[argv.index("--api-key") + 1] == "***" and "http://***@" in " ".join(argv)
    assert "alice" not in saved["config"]["server"]["url"]
    assert sorted(p.name for p in (tmp_path / "argv").iterdir()) == [
        "report.html",
        "report.md",
        "results.json",
        "results.parquet",
    ]


# ---- a saved notebook --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_saved_notebook_holds_no_secret(
    gated: tuple[Simulator, KeyGate], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    from workbench.notebook_report import execute_notebook

    sim, _ = gated
    host = sim.url.split("://", 1)[1]
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)  # the kernel inherits it, as from a user's shell
    monkeypatch.setenv("SIM_URL", f"http://alice:{URL_KEY}@{host}")
    cells = [
        "import logging, os\nlogging.basicConfig(level=logging.DEBUG, force=True)\n"
        "from workbench import Backend, Client, Request",
        "backend = Backend(os.environ['SIM_URL'], protocol='openai', api_key=os.environ['OPENAI_API_KEY'])\nbackend",
        "client = Client(backend)\nclient",
        "result = client.run(Request.chat('sim-small', 'hello', max_tokens=4))\nresult",
        "from workbench.metrics import to_frame\nto_frame([result])",
        "try:\n    client.run(Request.chat('nope', 'x'))\nexcept Exception as exc:\n    print(repr(exc))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    execute_notebook(nb, cwd=tmp_path, timeout=120)
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, str(path))
    text = path.read_text()
    assert "HTTP Request: POST" in text and "NotFoundError" in text  # the outputs we look at are there
    assert grep_tree(tmp_path) == {}


# ---- the lab token -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_lab_token_never_reaches_a_command_line(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    from workbench.lab import free_port

    token = "labtok-" + ENV_KEY
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    cmd = [sys.executable, "-m", "workbench.lab", "--dir", str(tmp_path), "--port", str(port), "--no-browser"]
    log_path = tmp_path / "lab.log"
    log = log_path.open("wb")  # a file, not a pipe: nobody reads a pipe while the server runs
    proc = subprocess.Popen(
        [*cmd, "--token-file", str(token_file)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.3)
        assert status == 200, (
            "JupyterLab did not start or refused the token:\n" + log_path.read_text()[-3000:]
        )
        with pytest.raises(urllib.error.HTTPError) as denied:  # the token is really in force
            urllib.request.urlopen(f"{base}/api/status", timeout=5)
        assert denied.value.code == 403
        # every process of ours (workbench lab and the JupyterLab it started): no token in a command line
        lines = _cmdlines()
        ours = [line for line in lines if "jupyterlab" in line or "workbench.lab" in line]
        assert any(f"--ServerApp.port={port}" in line for line in ours)  # JupyterLab itself is among them
        assert not [line for line in lines if token in line]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert f"token={token}" in log_path.read_text(errors="replace")  # printed for the user to open
    deadline = time.monotonic() + 15  # SIGTERM to `workbench lab` stops its JupyterLab too (no orphan)
    while _cmdlines(f"--ServerApp.port={port}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _cmdlines(f"--ServerApp.port={port}") == []


def _cmdlines(needle: str = "") -> list[str]:
    """Command lines of every process on the machine (as `ps` shows them to any user)."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # a process that ended meanwhile
    return [line for line in lines if needle in line]
