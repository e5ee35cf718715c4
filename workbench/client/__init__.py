"""Streaming clients over httpx: `Client` (sync) and `AsyncClient`, twins over the same I/O-free core.

Each honours the transport optimizations (`connection_pool`, `http2`, `fast_parse`, `early_cancel`),
stamps every network read on arrival, applies the four timeouts, and maps every failure into the
workbench exception tree at one boundary (`_shared.map_error`).
"""

from workbench.client._async import AsyncClient, AsyncStream
from workbench.client._sync import Client, Stream

__all__ = ["AsyncClient", "AsyncStream", "Client", "Stream"]
