"""Connection facts from httpx's `trace` request extension: was a connection opened, and how long it took.

httpcore reports `connection.connect_tcp.*` and `connection.start_tls.*` only when it opens a new
connection, so their absence means the request rode on a pooled (reused) connection.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ConnectionTrace"]


class ConnectionTrace:
    """One request's trace callback (sync); `acall` is the async twin httpx wants for AsyncClient."""

    __slots__ = ("_started", "opened", "tcp_ns", "tls_ns")

    def __init__(self) -> None:
        self._started: dict[str, int] = {}
        self.opened = False
        self.tcp_ns = 0
        self.tls_ns = 0

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        if not name.startswith("connection."):
            return
        now = time.perf_counter_ns()
        step, _, phase = name[len("connection.") :].rpartition(".")
        if step not in ("connect_tcp", "start_tls"):
            return
        if phase == "started":
            self._started[step] = now
            if step == "connect_tcp":
                self.opened = True
        elif phase == "complete" and step in self._started:
            spent = now - self._started.pop(step)
            if step == "connect_tcp":
                self.tcp_ns += spent
            else:
                self.tls_ns += spent

    async def acall(self, name: str, info: dict[str, Any]) -> None:
        self(name, info)

    @property
    def reused(self) -> bool:
        return not self.opened

    @property
    def connect_ms(self) -> float:
        """TCP + TLS time when this request opened a connection; 0.0 when it reused one."""
        return (self.tcp_ns + self.tls_ns) / 1e6 if self.opened else 0.0
