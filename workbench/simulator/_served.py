"""What both simulators (in-process `Simulator`, child-process `ProcessSimulator`) offer a client alike."""

from __future__ import annotations

import ssl
from abc import abstractmethod
from typing import Literal

from workbench._running import Running
from workbench._types import Backend, ProtocolName

__all__ = ["Served"]


class Served(Running):
    """`with` support, and a `Backend` and TLS trust for the server URL. Subclasses set `_ca_path`."""

    _ca_path: str | None

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    def ca_path(self) -> str | None:
        """PEM of the CA that signed the server certificate (pass as httpx `verify=`); None without TLS."""
        return self._ca_path

    def backend(self, protocol: ProtocolName | Literal["auto"] = "ollama", name: str = "") -> Backend:
        """A `Backend` for this simulator: its URL, the protocol, and its CA trusted when TLS is on."""
        return Backend(self.url, protocol=protocol, verify=self._ca_path or True, name=name or "simulator")

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting this simulator's CA (httpx prefers it to a `verify=` path)."""
        if self._ca_path is None:
            raise RuntimeError("simulator runs without TLS")
        return ssl.create_default_context(cafile=self._ca_path)
