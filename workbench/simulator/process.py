"""`ProcessSimulator`: the same simulator in a child process, for timing work that must not share a GIL.

An in-process `Simulator` shares the interpreter with the client under test: a busy client thread delays
the server's socket writes by up to the GIL switch interval, and the server's work slows the client. Here
the server runs in its own Python process; ground truth comes back over HTTP (`/_sim/*` on the same port).
Emit stamps stay comparable with the parent's `time.perf_counter_ns()`: on Linux and macOS it reads a
system-wide monotonic clock, the same in every process.

The child exits when the parent closes its stdin (also when the parent dies), so no server is left behind.

`processes=N` serves one port from N child processes (SO_REUSEPORT: the kernel spreads the connections over
them), so a many-stream benchmark is not limited by one server process's interpreter. Each child also listens
on a private port, through which its own ground truth is asked; `stats()` sums the children's counters.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from workbench.simulator._served import Served
from workbench.simulator.groundtruth import GroundTruth, ServerStats
from workbench.simulator.profile import Profile

__all__ = ["ProcessSimulator"]


class ProcessSimulator(Served):
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
        processes: int = 1,
    ) -> None:
        self.profile = profile if profile is not None else Profile()
        self.tls, self.http2, self.host, self._port, self._history = tls, http2, host, port, history
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if processes > 1 and tls:
            # each child would mint its own CA; a client could trust only one of them
            raise ValueError("processes > 1 serves plain HTTP only; use tls=False or processes=1")
        self.processes = processes
        self._proc: subprocess.Popen[bytes] | None = None
        self._siblings: list[subprocess.Popen[bytes]] = []
        self._url = ""
        self._ca_path: str | None = None
        self._http: httpx.Client | None = None
        self._controls: list[httpx.Client] = []

    def start(self, timeout_s: float = 30.0) -> ProcessSimulator:
        if self._proc is not None:
            return self
        try:
            self._proc, info = self._spawn(self._port, timeout_s)
            self._url, self._ca_path = info["url"], info["ca_path"]
            controls = [info["control_url"]]
            port = int(self._url.rsplit(":", 1)[1])
            for _ in range(self.processes - 1):
                proc, more = self._spawn(port, timeout_s)
                self._siblings.append(proc)
                controls.append(more["control_url"])
        except BaseException:
            self.stop()
            raise
        verify: ssl.SSLContext | bool = self.ssl_context() if self._ca_path else True
        self._controls = [
            httpx.Client(base_url=u, verify=verify, timeout=httpx.Timeout(60.0)) for u in controls
        ]
        self._http = self._controls[0]
        return self

    def _spawn(self, port: int, timeout_s: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        trace = self.profile.replay_trace
        spec = {
            # A trace goes over as its own file text (the child parses it as `Profile(trace=...)` would).
            "profile": dataclasses.asdict(dataclasses.replace(self.profile, trace=None)),
            "trace": trace.dumps() if trace is not None else None,
            "tls": self.tls,
            "http2": self.http2,
            "host": self.host,
            "port": port,
            "history": self._history,
            "reuse_port": self.processes > 1,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.simulator._child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            code = proc.wait(timeout_s)
            raise RuntimeError(f"simulator process exited with {code} before it was ready")
        info: dict[str, Any] = orjson.loads(line)
        return proc, info

    def stop(self, timeout_s: float = 10.0) -> None:
        procs = [p for p in (self._proc, *self._siblings) if p is not None]
        self._proc, self._siblings = None, []
        for client in self._controls:
            client.close()
        self._controls, self._http = [], None
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()  # the child's signal to shut down
        for proc in procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("simulator is not started")
        return self._url

    @property
    def running(self) -> bool:
        procs = [p for p in (self._proc, *self._siblings) if p is not None]
        return bool(procs) and all(p.poll() is None for p in procs)

    def _get(self, what: str, client: httpx.Client | None = None, **params: Any) -> Any:
        http = client or self._http
        if http is None:
            raise RuntimeError("simulator is not started")
        r = http.get(f"/_sim/{what}", params=params)
        if r.status_code == 404 and what == "ground_truth":
            raise KeyError(f"no ground truth for request id {params.get('id')!r}")
        r.raise_for_status()
        return r.json()

    def _ask_each(self, what: str, timeout_s: float, **params: Any) -> Any:
        """Ask every child until one knows the request (only the process that served it does)."""
        wait_key = "wait_s" if what == "ground_truth" else "timeout_s"
        if len(self._controls) <= 1:
            return self._get(what, None, **params, **{wait_key: timeout_s})
        deadline = time.monotonic() + timeout_s
        while True:
            for client in self._controls:
                try:
                    got = self._get(what, client, **params, **{wait_key: 0})
                except KeyError:
                    continue
                if what == "ground_truth" or got["ok"]:
                    return got
            if time.monotonic() >= deadline:
                if what == "ground_truth":
                    raise KeyError(f"no ground truth for request id {params.get('id')!r} in any process")
                return {"ok": False}
            time.sleep(0.02)

    def ground_truth(self, request_id: str, *, wait_s: float = 2.0) -> GroundTruth:
        d = self._ask_each("ground_truth", wait_s, id=request_id)
        for name in ("emit_ns", "token_emit_ns", "faults"):
            d[name] = tuple(d[name])
        return GroundTruth(**d)

    def wait_disconnect(self, request_id: str, timeout_s: float = 5.0) -> bool:
        return bool(self._ask_each("wait", timeout_s, id=request_id, disconnect=1)["ok"])

    def wait_finished(self, request_id: str, timeout_s: float = 5.0) -> bool:
        return bool(self._ask_each("wait", timeout_s, id=request_id, disconnect=0)["ok"])

    def stats(self) -> ServerStats:
        """Counters summed over the serving processes."""
        parts = [self._get("stats", c) for c in self._controls] if self._controls else [self._get("stats")]
        versions: dict[str, int] = {}
        for p in parts:
            for k, v in p["http_versions"].items():
                versions[k] = versions.get(k, 0) + int(v)
        return ServerStats(
            connections=sum(int(p["connections"]) for p in parts),
            requests=sum(int(p["requests"]) for p in parts),
            http_versions=versions,
            active=sum(int(p["active"]) for p in parts),
        )
