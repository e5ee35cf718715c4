"""What a cache stores for one answer, and its wire form (orjson + zstandard; never pickle).

An entry keeps the *chunks* as they arrived (text and offset from the first text chunk), so a replay has the
original chunk boundaries and, when asked, the original inter-chunk timing. It also keeps the original
figures (TTFT, done) so a hit can say how much time it saved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import zstandard

from workbench._exceptions import CacheError
from workbench._types import ProtocolName, StreamResult, Usage

__all__ = ["CacheEntry", "storable"]

_FORMAT = 1
# zstd level 3: the library default; a few hundred MB/s, so compression never dominates a lookup.
_LEVEL = 3


def storable(result: StreamResult, *, done_seen: bool = True) -> bool:
    """Only complete answers are stored: status ok, no error, not stopped, the protocol's end marker seen."""
    return (
        done_seen
        and result.status == "ok"
        and result.error is None
        and result.wasted_ms_after_stop is None
        and result.cache in ("off", "miss", "bypass")  # a replay is never stored again as if it were new
    )


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    protocol: ProtocolName
    backend: str
    model: str
    prompt: str
    # (ns after the first text chunk, text) per text-bearing chunk, in arrival order.
    chunks: tuple[tuple[int, str], ...]
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    server: dict[str, Any]
    ttft_ms: float | None
    done_ms: float | None
    output_tokens: int
    created: float = field(default_factory=time.time)  # wall clock: compared across processes and restarts
    nbytes: int = 0

    @classmethod
    def from_result(cls, key: str, result: StreamResult) -> CacheEntry:
        first = result.chunks[0].t_ns if result.chunks else 0
        chunks = tuple((c.t_ns - first, c.text) for c in result.chunks if c.text)
        usage = result.usage
        entry = cls(
            key=key,
            protocol=result.protocol,
            backend=result.backend,
            model=result.request.model,
            prompt=result.request.last_user_text,
            chunks=chunks,
            prompt_tokens=None if usage is None else usage.prompt_tokens,
            completion_tokens=None if usage is None else usage.completion_tokens,
            finish_reason=result.finish_reason,
            server=dict(result.server),
            ttft_ms=result.metrics.ttft_ms,
            done_ms=result.metrics.done_ms,
            output_tokens=result.metrics.output_tokens,
        )
        # Approximate resident size: the JSON form is within a small factor of the objects and cheap to get.
        object.__setattr__(entry, "nbytes", len(entry._json()))
        return entry

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.chunks)

    @property
    def usage(self) -> Usage | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return Usage(self.prompt_tokens, self.completion_tokens)

    def _json(self) -> bytes:
        return orjson.dumps(
            {
                "f": _FORMAT,
                "key": self.key,
                "protocol": self.protocol,
                "backend": self.backend,
                "model": self.model,
                "prompt": self.prompt,
                "chunks": self.chunks,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "finish_reason": self.finish_reason,
                "server": self.server,
                "ttft_ms": self.ttft_ms,
                "done_ms": self.done_ms,
                "output_tokens": self.output_tokens,
                "created": self.created,
            },
            default=str,  # server figures are JSON already; anything odd is kept as its text
        )

    def to_bytes(self) -> bytes:
        return zstandard.ZstdCompressor(level=_LEVEL).compress(self._json())

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheEntry:
        try:
            raw = zstandard.ZstdDecompressor().decompress(data)
            d = cast(dict[str, Any], orjson.loads(raw))
            if d.get("f") != _FORMAT:
                raise ValueError(f"unknown entry format {d.get('f')!r}")
            return cls(
                key=d["key"],
                protocol=d["protocol"],
                backend=d["backend"],
                model=d["model"],
                prompt=d["prompt"],
                chunks=tuple((int(o), str(t)) for o, t in d["chunks"]),
                prompt_tokens=d["prompt_tokens"],
                completion_tokens=d["completion_tokens"],
                finish_reason=d["finish_reason"],
                server=dict(d["server"]),
                ttft_ms=d["ttft_ms"],
                done_ms=d["done_ms"],
                output_tokens=int(d["output_tokens"]),
                created=float(d["created"]),
                nbytes=len(raw),
            )
        except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CacheError(
                f"a stored cache entry could not be decoded: {exc}",
                hint="the entry is dropped; clear the cache if this repeats",
            ) from exc
