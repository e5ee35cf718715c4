"""Streaming clients over httpx: `Client` (sync) and `AsyncClient`, thin drivers of one stream engine.

Each honours the transport optimizations (`connection_pool`, `http2`, `fast_parse`, `early_cancel`) and
the cache toggles (through `workbench.variant.build`), stamps every network read on arrival, applies the
timeouts, and maps every httpx failure into the workbench exception tree at one boundary
(`_shared.map_error`, called by the network sources). The streams are `workbench.stream`'s drivers.
"""

from workbench.client._async import AsyncClient
from workbench.client._shared import pool_limits
from workbench.client._sync import Client
from workbench.stream import AsyncStream, Stream

__all__ = ["AsyncClient", "AsyncStream", "Client", "Stream", "pool_limits"]
