"""One client per variant. The client turns the variant's `Optimizations` into parts itself
(`workbench.variant.build`): transport toggles, and a cache of its own, starting empty (a disk tier in a
fresh temporary folder removed with it), so a run measures what the toggles buy from a cold start and no
variant answers from another one's entries."""

from __future__ import annotations

from workbench._types import Backend, Timeouts
from workbench.cache import ResponseCache
from workbench.client import AsyncClient
from workbench.optimizations import Optimizations

__all__ = ["make_client"]


def make_client(
    backend: Backend, optimizations: Optimizations, timeouts: Timeouts, *, cache: ResponseCache | None = None
) -> AsyncClient:
    """A fresh `AsyncClient` for one variant (the runner's default `ClientFactory`). `cache`: use this one
    (e.g. a disk tier in a folder the user named) instead of the fresh one the client builds."""
    return AsyncClient(backend, optimizations=optimizations, timeouts=timeouts, cache=cache)
