"""`LlamaServer`: llama-cpp-python's OpenAI-compatible server as a child process on 127.0.0.1.

A server we did not write, run the way a user runs it (``python -m llama_cpp.server --model ... --chat_format
gemma``), so what the workbench measures against it is what a user would meet: its SSE framing, no usage in
the stream, its own request validation. Start-up takes a second or two (model load); `start()` polls
``GET /v1/models`` until the server answers; if the child dies first, the error carries the tail of its log.

The child runs through `workbench.llm._child`, which exits when our end of its stdin closes, so a parent that
crashes never leaves a server behind. It runs in its own session, so a Ctrl-C in the terminal reaches only the
parent, which then stops the server in order.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from workbench._exceptions import ConfigError, WorkbenchError
from workbench._running import Running
from workbench._types import Backend
from workbench.llm.model import MODEL_ALIAS, ensure_model, require_llm_extra

__all__ = ["LlamaServer", "LlamaServerError"]

_TAIL_BYTES = 3000
_PORT_RACE_RETRIES = 3


class LlamaServerError(WorkbenchError):
    """The llama.cpp server did not start or died. `log_tail` holds the end of its output."""

    default_hint = "read the server's output above; `workbench llm --verbose` shows llama.cpp's own log"

    def __init__(self, message: str, *, log_tail: str = "", hint: str | None = None) -> None:
        self.log_tail = log_tail
        if log_tail:
            message = f"{message}\n--- last lines of the server's output ---\n{log_tail.rstrip()}"
        super().__init__(message, hint=hint)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _check_port(host: str, port: int) -> None:
    """Fail before loading the model when a fixed port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="another server uses that port: pick another with --port, or --port 0 for a free one",
            ) from exc


class LlamaServer(Running):
    """llama.cpp serving a GGUF (by default the bundled Gemma 3 270M) on ``host:port``; a context manager.

    ``port=0`` picks a free port. Generation and prompt processing use half the cores (at least one), so
    the client under measurement keeps cores of its own: llama.cpp's threads wait for each other at every
    step, and one of them descheduled by the client (or a neighbour) stalls them all, which on 2 cores
    made prompt processing times swing by 2x from run to run. ``n_ctx`` is kept modest (2048 tokens)
    because the KV cache is allocated up front. Everything in ``extra_args`` goes to ``llama_cpp.server``
    as is and wins over ours (e.g. ``("--logits_all", "true")`` for ``logprobs``). ``verbose=True`` keeps
    llama.cpp's own per-request timing log in `log_path`. ``interrupt_requests=True`` restores
    llama-cpp-python's default of cutting a running stream short when the next request arrives.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        alias: str = MODEL_ALIAS,
        chat_format: str = "gemma",
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        verbose: bool = False,
        interrupt_requests: bool = False,
        extra_args: tuple[str, ...] = (),
        startup_timeout_s: float = 120.0,
    ) -> None:
        cores = _cores()
        self.model_path: Path | None = Path(model_path).expanduser() if model_path is not None else None
        self.cache_dir = cache_dir
        self.host, self._port_arg, self.alias, self.chat_format = host, port, alias, chat_format
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else max(1, min(8, cores // 2))
        self.n_threads_batch = n_threads_batch if n_threads_batch is not None else self.n_threads
        self.verbose, self.extra_args, self.startup_timeout_s = verbose, tuple(extra_args), startup_timeout_s
        self.interrupt_requests = interrupt_requests
        self.log_path: Path | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> LlamaServer:
        """Start the server and wait until it answers; a second call while running does nothing."""
        if self.running:
            return self
        self.stop()  # a server that died on its own: reap it and drop its log before starting anew
        require_llm_extra()
        if self.model_path is None:
            self.model_path = ensure_model(self.cache_dir)
        elif not self.model_path.is_file():
            raise ConfigError(f"no GGUF model file at {self.model_path}", hint="pass a .gguf file's path")
        t0 = time.perf_counter()
        if self._port_arg:
            _check_port(self.host, self._port_arg)
        for attempt in range(_PORT_RACE_RETRIES):
            port = self._port_arg or _free_port(self.host)
            try:
                self._launch(port)
                break
            except LlamaServerError as exc:
                # A free port picked here can be taken by someone else before the child binds it: try another.
                raced = "address already in use" in exc.log_tail.lower()
                if self._port_arg or not raced or attempt == _PORT_RACE_RETRIES - 1:
                    raise
        self.startup_s = time.perf_counter() - t0
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the child's signal to exit (see workbench.llm._child)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log(remove=True)

    def __del__(self) -> None:
        # Only a safety net for servers nobody stopped; the child also exits when our stdin pipe closes.
        proc = getattr(self, "_proc", None)  # absent when __init__ failed
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()

    # -- what callers use ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("LlamaServer is not started: use `with LlamaServer() as server:` or .start()")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def model(self) -> str:
        """The model name the server lists and answers to (``--model_alias``)."""
        return self.alias

    @property
    def version(self) -> str:
        return importlib.metadata.version("llama-cpp-python")

    def backend(self, name: str = "llama.cpp") -> Backend:
        """An OpenAI-protocol `Backend` for this server (llama.cpp does not speak Ollama's protocol)."""
        return Backend(self.url, protocol="openai", name=name)

    def log_tail(self, n_bytes: int = _TAIL_BYTES) -> str:
        """The last ``n_bytes`` of the server's combined stdout/stderr."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n_bytes))
            return f.read().decode("utf-8", "replace")

    # -- internals -------------------------------------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        assert self.model_path is not None
        return [
            sys.executable, "-m", "workbench.llm._child",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--chat_format", self.chat_format,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads_batch),
            "--verbose", "true" if self.verbose else "false",
            # llama-cpp-python's default (true) ends the running stream with [DONE] as soon as another request
            # arrives: under concurrent load every stream but the last would be cut short without an error.
            # Off, requests queue for the one model, as on any single-slot server.
            "--interrupt_requests", "true" if self.interrupt_requests else "false",
            # The server's default keeps logits for every prompt token (only `logprobs` needs them): with
            # Gemma's 262k-token vocabulary that is 1 MB copied per prompt token and most of the TTFT.
            "--logits_all", "false",
            *self.extra_args,
        ]  # fmt: skip

    def _launch(self, port: int) -> None:
        self._close_log(remove=True)
        fd, name = tempfile.mkstemp(prefix="workbench-llama-", suffix=".log")
        self.log_path, self._log = Path(name), os.fdopen(fd, "wb")
        # Output goes to a file, not a pipe: nobody reads a pipe while the server runs, and a full pipe
        # buffer would stall the server mid-stream.
        self._proc = subprocess.Popen(
            self._command(port),
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # unbuffered: the log tail in an error (and the server's "Disconnected from client" lines) must be
            # in the file when we read it, not in the child's stdout buffer
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._port = port
        try:
            self._wait_ready()
        except BaseException:
            # LlamaServerError already carries the log tail; stop() removes the log file.
            self.stop()
            self._port = 0
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=httpx.Timeout(2.0)) as http:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise LlamaServerError(
                        f"the llama.cpp server exited with code {code} before it was ready "
                        f"(model {self.model_path})",
                        log_tail=self.log_tail(),
                    )
                try:
                    r = http.get(f"{self.url}/v1/models")
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet: the model is still loading
                if time.monotonic() > deadline:
                    raise LlamaServerError(
                        f"the llama.cpp server did not answer GET /v1/models within "
                        f"{self.startup_timeout_s:.0f} s",
                        log_tail=self.log_tail(),
                        hint="the machine may be busy; pass a larger startup_timeout_s",
                    )
                time.sleep(0.1)

    def _close_log(self, *, remove: bool) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        if remove and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
