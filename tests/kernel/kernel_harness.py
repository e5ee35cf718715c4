"""A real IPython kernel (the venv's ipykernel) driven over ZeroMQ, with every IOPub message kept and stamped."""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[2]


@dataclass
class IOPubLog:
    msgs: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def comm_msgs(self, comm_id: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, m)
            for t, m in self.msgs
            if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == comm_id and t >= since
        ]


class Kernel:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        self.km = KernelManager(kernel_name="python3")
        # The venv's own interpreter, whatever kernelspecs the machine has installed.
        self.km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        self.km.start_kernel(env=env, cwd=str(REPO))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.log = IOPubLog()

    def drain(self, timeout: float = 0.0) -> None:
        """Move every waiting IOPub message into the log (stamped on receipt)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                msg = self.kc.get_iopub_msg(timeout=left if left > 0 else 0.01)
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return
                continue
            self.log.msgs.append((time.monotonic(), msg))

    def submit(self, code: str) -> str:
        return str(self.kc.execute(code, store_history=False))

    def wait_idle(self, msg_id: str, timeout: float = 60.0) -> float:
        """Collect IOPub until the kernel reports idle for `msg_id`; returns the time idle arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            now = time.monotonic()
            self.log.msgs.append((now, msg))
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                return now
        raise AssertionError(f"kernel not idle within {timeout} s after {msg_id}")

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute and wait; returns stdout; raises with the traceback on error."""
        msg_id = self.submit(code)
        self.wait_idle(msg_id, timeout)
        out, errors = [], []
        for _, m in self.log.msgs:
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                errors.append("\n".join(m["content"]["traceback"]))
        if errors:
            raise AssertionError("kernel error:\n" + "\n".join(errors))
        return "".join(out)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.close()
