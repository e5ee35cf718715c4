"""Fault injection plan for one streamed response, from a Profile. Pure, no I/O.

Each `*_after` knob names a count k of content chunks already sent; the fault fires right before content
chunk k would go out. A k beyond the end of the response fires after the last content chunk, before the
end marker (so `truncate_after=10**9` always drops the end marker).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.simulator.profile import Profile

__all__ = ["FaultPlan", "error_status_message"]

_STATUS_MESSAGES = {
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
}


def error_status_message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"simulated HTTP {status} error")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    n_chunks: int
    disconnect_at: int | None = None
    truncate_at: int | None = None
    error_at: int | None = None
    malformed_at: int | None = None
    stall_at: int | None = None
    stall_ns: int = 0

    @classmethod
    def build(cls, profile: Profile, n_chunks: int) -> FaultPlan:
        def clamp(k: int | None) -> int | None:
            return None if k is None else max(0, min(k, n_chunks))

        return cls(
            n_chunks=n_chunks,
            disconnect_at=clamp(profile.disconnect_after),
            truncate_at=clamp(profile.truncate_after),
            error_at=clamp(profile.error_after),
            malformed_at=clamp(profile.malformed_after),
            stall_at=clamp(profile.stall_after),
            stall_ns=int(profile.stall_s * 1e9),
        )

    @property
    def end_at(self) -> int:
        """Content chunk index where the stream stops early (or n_chunks)."""
        stops = [k for k in (self.disconnect_at, self.truncate_at, self.error_at) if k is not None]
        return min([self.n_chunks, *stops])

    def next_point(self, sent: int) -> int:
        """The first fault point after `sent`: a batch must not run past it."""
        pts = [
            k
            for k in (self.disconnect_at, self.truncate_at, self.error_at, self.malformed_at, self.stall_at)
            if k is not None and k > sent
        ]
        return min([self.n_chunks, *pts])

    def names(self) -> list[str]:
        out = []
        for name in ("disconnect", "truncate", "error", "malformed", "stall"):
            if getattr(self, f"{name}_at") is not None:
                out.append(f"{name}_after={getattr(self, f'{name}_at')}")
        return out
