"""Fault cases shared by the sync and async integration tests: (name, X-Sim-Fault, timeouts, error, limit_s)."""

from __future__ import annotations

from workbench import (
    FirstTokenTimeout,
    IdleTimeout,
    MalformedStreamError,
    ServerStreamError,
    StatusError,
    Timeouts,
    TotalTimeout,
    TruncatedStreamError,
    WorkbenchError,
)

FIRST_TOKEN_S, IDLE_S, TOTAL_S = 0.6, 0.6, 1.2
T = Timeouts(connect=2.0, first_token=FIRST_TOKEN_S, idle=IDLE_S, total=TOTAL_S)

# (id, fault header, error type, budget in seconds for the error to surface, partial text expected)
FAULTS: list[tuple[str, str, type[WorkbenchError], float, bool]] = [
    ("disconnect", "disconnect_after=3", TruncatedStreamError, 1.0, True),
    ("error_status", "error_status=503", StatusError, 1.0, False),
    ("stall", "stall_after=3,stall_s=5", IdleTimeout, IDLE_S + 1.0, True),
    ("malformed", "malformed_after=3", MalformedStreamError, 1.0, True),
    ("truncated", "truncate_after=3", TruncatedStreamError, 1.0, True),
    ("error_mid_stream", "error_after=3", ServerStreamError, 1.0, True),
    ("slow_first_token", "ttft_ms=5000", FirstTokenTimeout, FIRST_TOKEN_S + 1.0, False),
    ("total", "token_delay_ms=60", TotalTimeout, TOTAL_S + 1.0, True),
]
