"""The httpx client a cache part (a backend embedder, an LLM judge) talks to its backend through."""

from __future__ import annotations

from typing import Self

import httpx

from workbench._types import Backend

__all__ = ["BackendClient"]


class BackendClient:
    """Holds an httpx client for one backend: the caller's, or one made here with the backend's URL, TLS
    setting and auth headers. `close()` (or the end of a `with` block) closes it only if it was made here."""

    _client: httpx.Client
    _own_client: bool

    def _connect(self, backend: Backend, client: httpx.Client | None, timeout: float) -> None:
        self._own_client = client is None
        self._client = client or httpx.Client(
            base_url=backend.url, timeout=timeout, verify=backend.verify, headers=backend.auth_headers()
        )

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
