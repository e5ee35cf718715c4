"""`ProcessSimulator`: the same simulator in a child process, for timing work that must not share a GIL.

An in-process `Simulator` shares the interpreter with the client under test: a busy client thread delays
the server's socket writes by up to the GIL switch interval, and the server's work slows the client. Here
the server runs in its own Python process; ground truth comes back over HTTP (`/_sim/*` on the same port).
Emit stamps stay comparable with the parent's `time.perf_counter_ns()`: on Linux and macOS it reads a
system-wide monotonic clock, the same in every process.

The child exits when the parent closes its stdin (also when the parent dies), so no server is left behind.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import subprocess
import sys
from types import TracebackType
from typing import Any, Literal

import httpx
import orjson

from workbench._types import Backend, ProtocolName
from workbench.simulator.groundtruth import GroundTruth, ServerStats
from workbench.simulator.profile import Profile

__all__ = ["ProcessSimulator"]


class ProcessSimulator:
    """Same interface as `Simulator` (url, ca_path, ssl_context, ground_truth, wait_disconnect, stats)."""

    def __init__(
        self,
        profile: Profile | None = None,
        *,
        tls: bool = False,
        http2: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 10_000,
    ) -> None:
        self.profile = profile if profile is not None else Profile()
        self.tls, self.http2, self.host, self._port, self._history = tls, http2, host, port, history
        self._proc: subprocess.Popen[bytes] | None = None
        self._url = ""
        self._ca_path: str | None = None
        self._http: httpx.Client | None = None

    def start(self, timeout_s: float = 30.0) -> ProcessSimulator:
        if self._proc is not None:
            return self
        trace = self.profile.replay_trace
        spec = {
            # A trace goes over as its own file text (the child parses it as `Profile(trace=...)` would).
            "profile": dataclasses.asdict(dataclasses.replace(self.profile, trace=None)),
            "trace": trace.dumps() if trace is not None else None,
            "tls": self.tls,
            "http2": self.http2,
            "host": self.host,
            "port": self._port,
            "history": self._history,
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.simulator._child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait(timeout_s)
            self._proc = None
            raise RuntimeError(f"simulator process exited with {code} before it was ready")
        info = orjson.loads(line)
        self._url, self._ca_path = info["url"], info["ca_path"]
        verify: ssl.SSLContext | bool = self.ssl_context() if self._ca_path else True
        self._http = httpx.Client(base_url=self._url, verify=verify, timeout=httpx.Timeout(60.0))
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if self._http is not None:
            self._http.close()
            self._http = None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the child's signal to shut down
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ProcessSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("simulator is not started")
        return self._url

    @property
    def ca_path(self) -> str | None:
        return self._ca_path

    def backend(self, protocol: ProtocolName | Literal["auto"] = "ollama", name: str = "") -> Backend:
        """A `Backend` for this simulator: its URL, the protocol, and its CA trusted when TLS is on."""
        return Backend(self.url, protocol=protocol, verify=self.ca_path or True, name=name or "simulator")

    def ssl_context(self) -> ssl.SSLContext:
        if self._ca_path is None:
            raise RuntimeError("simulator runs without TLS")
        return ssl.create_default_context(cafile=self._ca_path)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _get(self, what: str, **params: Any) -> Any:
        if self._http is None:
            raise RuntimeError("simulator is not started")
        r = self._http.get(f"/_sim/{what}", params=params)
        if r.status_code == 404 and what == "ground_truth":
            raise KeyError(f"no ground truth for request id {params.get('id')!r}")
        r.raise_for_status()
        return r.json()

    def ground_truth(self, request_id: str, *, wait_s: float = 2.0) -> GroundTruth:
        d = self._get("ground_truth", id=request_id, wait_s=wait_s)
        for name in ("emit_ns", "token_emit_ns", "faults"):
            d[name] = tuple(d[name])
        return GroundTruth(**d)

    def wait_disconnect(self, request_id: str, timeout_s: float = 5.0) -> bool:
        return bool(self._get("wait", id=request_id, timeout_s=timeout_s, disconnect=1)["ok"])

    def wait_finished(self, request_id: str, timeout_s: float = 5.0) -> bool:
        return bool(self._get("wait", id=request_id, timeout_s=timeout_s, disconnect=0)["ok"])

    def stats(self) -> ServerStats:
        return ServerStats(**self._get("stats"))
