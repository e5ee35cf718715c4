"""The Redis tier: one cache shared by several processes (or machines) through a real redis-server.

Keys are ``{prefix}:{namespace}:e:{key}`` (entries, zstd-compressed JSON, ``SET ... PX ttl``) and
``{prefix}:{namespace}:stats`` (a hash of counters, bumped with ``HINCRBY``, so every process adds to the
same numbers atomically). The namespace is in the Redis key *and* in the hashed cache key, so two tenants
never read each other's entries. The size bound is Redis's own: run it with ``maxmemory`` and
``maxmemory-policy allkeys-lru``.

Failures never reach the user's run: a connection error or timeout is a miss (or a skipped store), with
one ``warnings.warn`` per outage. During an outage the server is not retried for ``retry_after_s``, so a
dead Redis costs nothing per lookup; the first success after that ends the outage (a new one warns again).
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import redis as redis_lib

from workbench._secrets import redact_url
from workbench.cache.counters import CacheTierWarning, Counters, TierHealth
from workbench.cache.entry import CacheEntry

__all__ = ["RedisTier", "RedisUnavailableWarning"]


class RedisUnavailableWarning(CacheTierWarning):
    """The Redis cache tier cannot be reached; lookups count as misses until it is back."""


class RedisTier:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        prefix: str = "wb",
        ttl_s: float | None = 24 * 3600.0,
        socket_timeout_s: float = 0.5,
        retry_after_s: float = 2.0,
        client: Any = None,
    ) -> None:
        self.url = redact_url(url)  # for messages: a redis://:password@ URL keeps its password to itself
        self.namespace = namespace
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.counters = Counters()
        self.health = TierHealth("redis", self.counters)
        self._r: redis_lib.Redis = client or redis_lib.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._state_lock = threading.Lock()
        self._down_since: float | None = None  # monotonic time of the failure that began the outage
        self._last_failure = 0.0
        self.outages = 0

    # ---- key layout ----

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}:{self.namespace}:e:{key}"

    @property
    def stats_key(self) -> str:
        return f"{self.prefix}:{self.namespace}:stats"

    # ---- outage handling ----

    def _available(self) -> bool:
        if self._down_since is None:
            return True
        return time.monotonic() - self._last_failure >= self.retry_after_s

    def _failed(self, exc: Exception, *, store: bool = False) -> None:
        self.counters.incr("errors")
        self.health.last_error = exc
        if store:
            self.counters.incr("skipped")
        with self._state_lock:
            self._last_failure = time.monotonic()
            if self._down_since is not None:
                return
            self._down_since = self._last_failure
            self.outages += 1
        warnings.warn(
            RedisUnavailableWarning(
                f"Redis cache at {self.url} is unavailable ({type(exc).__name__}: {exc}); "
                f"treating lookups as misses and retrying every {self.retry_after_s:g} s"
            ),
            stacklevel=4,
        )

    def _ok(self) -> None:
        if self._down_since is not None:
            with self._state_lock:
                self._down_since = None

    @property
    def available(self) -> bool:
        return self._down_since is None

    # ---- tier API ----

    def get(self, key: str) -> CacheEntry | None:
        entry = self._fetch(key, count=True)
        return entry

    def peek(self, key: str) -> CacheEntry | None:
        return self._fetch(key, count=False)

    def _fetch(self, key: str, *, count: bool) -> CacheEntry | None:
        if not self._available():
            if count:
                self.counters.incr("misses")
            return None
        try:
            data = self._r.get(self._entry_key(key))
            if count:
                self._r.hincrby(self.stats_key, "hits" if data is not None else "misses", 1)
        except redis_lib.RedisError as exc:
            self._failed(exc)
            if count:
                self.counters.incr("misses")
            return None
        self._ok()
        entry = None
        if data is not None:
            try:
                entry = CacheEntry.from_bytes(data if isinstance(data, bytes) else data.encode())
            except Exception as exc:  # a foreign or corrupt value under our key: a miss, never a crash
                self.health.failed("decode", exc, advice="the lookup is a miss")
        if count:
            self.counters.incr("hits" if entry is not None else "misses")
        return entry

    def put(self, entry: CacheEntry) -> bool:
        if not self._available():
            self.counters.incr("skipped")
            return False
        blob = entry.to_bytes()
        try:
            pipe = self._r.pipeline(transaction=False)
            if self.ttl_s is None:
                pipe.set(self._entry_key(entry.key), blob)
            else:
                pipe.set(self._entry_key(entry.key), blob, px=max(1, int(self.ttl_s * 1000)))
            pipe.hincrby(self.stats_key, "stores", 1)
            pipe.execute()
        except redis_lib.RedisError as exc:
            self._failed(exc, store=True)
            return False
        self._ok()
        self.counters.incr("stores")
        return True

    def remove(self, key: str) -> bool:
        try:
            n = int(self._r.delete(self._entry_key(key)))
        except redis_lib.RedisError as exc:
            self._failed(exc)
            return False
        return n > 0

    def shared_stats(self) -> dict[str, int]:
        """The counters every process sharing this namespace added up (HINCRBY), or {} when unreachable."""
        try:
            raw = self._r.hgetall(self.stats_key)
        except redis_lib.RedisError as exc:
            self._failed(exc)
            return {}
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}

    def clear(self, *, all_namespaces: bool = False) -> None:
        """Delete this namespace's entries and stats (``all_namespaces=True``: every namespace under this
        prefix). SCAN, never KEYS: it does not block the server."""
        pattern = f"{self.prefix}:*" if all_namespaces else f"{self.prefix}:{self.namespace}:*"
        try:
            batch: list[Any] = []
            for k in self._r.scan_iter(match=pattern, count=500):
                batch.append(k)
                if len(batch) >= 500:
                    self._r.delete(*batch)
                    batch.clear()
            if batch:
                self._r.delete(*batch)
        except redis_lib.RedisError as exc:
            self._failed(exc)

    def __len__(self) -> int:
        try:
            return sum(1 for _ in self._r.scan_iter(match=f"{self.prefix}:{self.namespace}:e:*", count=500))
        except redis_lib.RedisError as exc:
            self._failed(exc)
            return 0

    @property
    def nbytes(self) -> int:
        """Bytes of this namespace's stored entries (values as written: orjson + zstd, see `entry.py`), summed
        by SCAN and a pipelined STRLEN per batch: O(entries), never blocking the server; 0 when unreachable.
        Redis's own per-key overhead is not included (INFO memory has the server-wide figure)."""
        try:
            total = 0
            batch: list[Any] = []
            for k in self._r.scan_iter(match=f"{self.prefix}:{self.namespace}:e:*", count=500):
                batch.append(k)
                if len(batch) >= 500:
                    total += self._strlen(batch)
                    batch.clear()
            if batch:
                total += self._strlen(batch)
            return total
        except redis_lib.RedisError as exc:
            self._failed(exc)
            return 0

    def gauges(self) -> tuple[int | None, int | None]:
        """(entries, bytes) of this namespace; None while Redis is unreachable (never a made-up 0)."""
        if not self._available():
            return None, None
        errors = self.counters.get("errors")
        n, b = len(self), self.nbytes
        return (None, None) if self.counters.get("errors") > errors else (n, b)

    def _strlen(self, keys: list[Any]) -> int:
        pipe = self._r.pipeline(transaction=False)
        for k in keys:
            pipe.strlen(k)
        return sum(int(n) for n in pipe.execute())

    def close(self) -> None:
        try:
            self._r.close()
        except redis_lib.RedisError:
            pass
