"""`ResponseCache`: the tiers composed (memory -> disk -> redis -> semantic) plus the caching policy.

Lookup order is fastest first. A hit in a lower tier is promoted upward (a disk hit is put in memory, a
Redis hit in disk and memory), so the next identical request is answered by the fastest tier. The semantic
tier stores only (partition, prompt text, key); its match is resolved to an entry through the exact tiers,
and a match whose entry has gone (evicted, expired) is removed from the semantic index and is a miss.

Toggles: ``exact=False`` turns exact-key answers off (the tiers still hold entries for the semantic tier);
``disk`` and ``redis`` add those tiers; ``semantic`` is any object with the `SemanticLike` methods.

Policy for sampled requests (temperature > 0 without a seed, see `workbench.cache.key.is_sampled`):
``"bypass"`` (default) neither looks up nor stores them, and their result says ``cache="bypass"``;
``"replay"`` caches them like any other request (a replay then repeats one draw).

A cache never costs an answer: a tier that fails (disk full, corrupt file, read-only, Redis down, or any
exception from a tier object) is a miss for that lookup and a skipped store for that store, counted in
`stats_frame()` (``errors``, ``skipped``, ``last_error``) and warned once per tier and kind
(`CacheTierWarning`); the other tiers go on. Isolation: keys name the backend by `backend_identity` (its
normalised URL, not its display name), plus a credential hash when ``key_by_credential=True``; the disk
and Redis tiers built from a path / URL hold this cache's ``namespace`` (a tier passed as an object keeps
its own) and ``clear()`` empties only that namespace.
"""

from __future__ import annotations

import importlib
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import polars as pl

from workbench._exceptions import CacheError, ConfigError
from workbench._types import Request, StreamResult
from workbench.cache.counters import Counters, EventLog, TierHealth
from workbench.cache.disk import DiskTier, RepairReport
from workbench.cache.entry import CacheEntry, storable
from workbench.cache.exact import ExactTier
from workbench.cache.key import TemperaturePolicy, is_sampled, partition_key, request_key
from workbench.cache.redis import RedisTier
from workbench.cache.replay import AsyncReplay, Replay, ReplaySource, replay_starter
from workbench.optimizations import Optimizations

__all__ = ["CacheHit", "ResponseCache", "SemanticLike", "SemanticMatchLike"]


class SemanticMatchLike(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def similarity(self) -> float: ...

    @property
    def matched_text(self) -> str: ...


class SemanticLike(Protocol):
    """What `ResponseCache` needs from `workbench.cache.semantic.SemanticTier`."""

    def lookup(self, partition: str, text: str) -> SemanticMatchLike | None: ...

    def add(self, partition: str, text: str, key: str) -> None: ...

    def remove(self, key: str) -> None: ...


class _Tier(Protocol):
    name: str
    counters: Counters

    def get(self, key: str) -> CacheEntry | None: ...

    def peek(self, key: str) -> CacheEntry | None: ...

    def put(self, entry: CacheEntry) -> bool: ...

    def remove(self, key: str) -> bool: ...

    def clear(self, *, all_namespaces: bool = False) -> None: ...

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A lookup that found an answer. `tier` is where it was found; `kind` is what the result will say."""

    entry: CacheEntry
    key: str
    kind: Literal["exact", "semantic"]
    tier: str
    similarity: float | None = None
    matched_prompt: str | None = None
    lookup_us: float = 0.0


class ResponseCache:
    """Exact (memory, disk, Redis) and semantic response caches behind one lookup/store API."""

    def __init__(
        self,
        *,
        namespace: str = "default",
        exact: bool = True,
        max_entries: int = 1024,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float | None = 3600.0,
        disk: DiskTier | str | Path | None = None,
        redis: RedisTier | str | None = None,
        semantic: SemanticLike | None = None,
        temperature_policy: TemperaturePolicy = "bypass",
        replay_timing: bool = False,
        log_size: int = 10_000,
        key_by_credential: bool = False,
    ) -> None:
        if temperature_policy not in ("bypass", "replay"):
            raise ConfigError(
                f"unknown temperature_policy {temperature_policy!r}", hint="use 'bypass' or 'replay'"
            )
        self.namespace = namespace
        self.exact = exact
        self.temperature_policy: TemperaturePolicy = temperature_policy
        self.replay_timing = replay_timing
        # Part of every key when set: an answer is served only to a client holding the same credential.
        self.key_by_credential = key_by_credential
        self.memory = ExactTier(max_entries=max_entries, max_bytes=max_bytes, ttl_s=ttl_s)
        self.disk = (
            disk if isinstance(disk, DiskTier) or disk is None else DiskTier(disk, namespace=namespace)
        )
        self.redis = (
            redis if isinstance(redis, RedisTier) or redis is None else RedisTier(redis, namespace=namespace)
        )
        self.semantic = semantic
        if semantic is not None and self.disk is None and self.redis is None:
            # Memory is the only home of the answers: when it drops one, the semantic index entry pointing
            # at it goes too (with disk/Redis the answer may live on; dangling matches are removed on lookup).
            self.memory.on_drop = self._forget_semantic
        self.counters = Counters(("hits", "misses", "bypass", "stores", "not_stored", "errors"))
        self.semantic_counters = Counters()
        # failures raised *through* a tier's own guard (a tier object of the user's, a bug): same policy
        self._guards: dict[str, TierHealth] = {}
        self._health = TierHealth("response cache", self.counters)
        self.log = EventLog(log_size)
        self._semantic_warned = False
        self._warn_lock = threading.Lock()

    @classmethod
    def from_optimizations(
        cls,
        opts: Optimizations,
        *,
        disk_path: str | Path | None = None,
        redis_url: str | None = None,
        semantic: SemanticLike | None = None,
        **kwargs: Any,
    ) -> ResponseCache | None:
        """The cache an `Optimizations` asks for, or None when every cache toggle is off (and no Redis URL).

        `disk_cache` needs `disk_path`. `semantic_cache` uses `semantic` when given, else builds
        `workbench.cache.semantic.SemanticTier()` with its defaults.
        """
        if not (opts.exact_cache or opts.semantic_cache or opts.disk_cache or redis_url):
            return None
        if opts.disk_cache and disk_path is None:
            raise ConfigError("disk_cache is on but no disk_path was given", hint="pass disk_path='...'")
        if opts.semantic_cache and semantic is None:
            semantic = _default_semantic()
        return cls(
            exact=opts.exact_cache or opts.disk_cache or redis_url is not None,
            disk=disk_path if opts.disk_cache else None,
            redis=redis_url,
            semantic=semantic if opts.semantic_cache else None,
            **kwargs,
        )

    # ---- keys and policy ----

    @property
    def tiers(self) -> list[_Tier]:
        out: list[_Tier] = [self.memory]
        if self.disk is not None:
            out.append(self.disk)
        if self.redis is not None:
            out.append(self.redis)
        return out

    def key(self, request: Request, *, backend: str = "") -> str:
        return request_key(request, namespace=self.namespace, backend=backend)

    def partition(self, request: Request, *, backend: str = "") -> str:
        return partition_key(request, namespace=self.namespace, backend=backend)

    def bypasses(self, request: Request) -> bool:
        """True when the policy says this request is neither looked up nor stored."""
        return self.temperature_policy == "bypass" and is_sampled(request)

    # ---- lookup ----

    def lookup(self, request: Request, *, backend: str = "") -> CacheHit | None:
        """The stored answer for `request`, or None. A bypassed request is logged as such and returns None."""
        t0 = time.perf_counter_ns()
        if self.bypasses(request):
            self.counters.incr("bypass")
            self.log.add("policy", "bypass", None, time.perf_counter_ns() - t0)
            return None
        key = self.key(request, backend=backend)
        hit: CacheHit | None = None
        if self.exact:
            hit = self._lookup_exact(key)
        if hit is None and self.semantic is not None:
            hit = self._lookup_semantic(request, backend)
        dt = time.perf_counter_ns() - t0
        if hit is None:
            self.counters.incr("misses")
            self.log.add("none", "miss", None, dt)
            return None
        self.counters.incr("hits")
        self.log.add(hit.tier, hit.kind, hit.similarity, dt)
        return CacheHit(hit.entry, hit.key, hit.kind, hit.tier, hit.similarity, hit.matched_prompt, dt / 1e3)

    def _guard(self, tier: _Tier) -> TierHealth:
        g = self._guards.get(tier.name)
        if g is None:
            g = self._guards.setdefault(tier.name, TierHealth(tier.name, tier.counters))
        return g

    def _get(self, tier: _Tier, key: str, *, count: bool) -> CacheEntry | None:
        try:
            return tier.get(key) if count else tier.peek(key)
        except Exception as exc:  # the tiers catch their own failures; this is the last line
            self._guard(tier).failed("lookup", exc, advice="treated as a miss")
            if count:
                tier.counters.incr("misses")
            return None

    def _put(self, tier: _Tier, entry: CacheEntry) -> bool:
        try:
            return tier.put(entry)
        except Exception as exc:
            self._guard(tier).failed("store", exc, advice="the store is skipped", store=True)
            return False

    def _lookup_exact(self, key: str) -> CacheHit | None:
        tiers = self.tiers
        for i, tier in enumerate(tiers):
            entry = self._get(tier, key, count=True)
            if entry is not None:
                for upper in tiers[:i]:  # promote into every faster tier
                    self._put(upper, entry)
                return CacheHit(entry, key, "exact", tier.name)
        return None

    def _fetch(self, key: str) -> tuple[CacheEntry, str] | None:
        tiers = self.tiers
        for i, tier in enumerate(tiers):
            entry = self._get(tier, key, count=False)
            if entry is not None:
                for upper in tiers[:i]:
                    self._put(upper, entry)
                return entry, tier.name
        return None

    def _lookup_semantic(self, request: Request, backend: str) -> CacheHit | None:
        assert self.semantic is not None
        try:
            match = self.semantic.lookup(self.partition(request, backend=backend), request.last_user_text)
        except Exception as exc:  # the semantic tier is an optimisation: it may fail, the run may not
            self._semantic_failed(exc)
            self.semantic_counters.incr("misses")
            return None
        if match is None:
            self.semantic_counters.incr("misses")
            return None
        found = self._fetch(match.key)
        if found is None:
            # The answer left every tier (evicted or expired): drop the dangling index entry.
            self.semantic_counters.incr("misses")
            self.semantic_counters.incr("evictions")
            try:
                self.semantic.remove(match.key)
            except Exception as exc:
                self._semantic_failed(exc)
            return None
        self.semantic_counters.incr("hits")
        entry, _ = found
        return CacheHit(entry, match.key, "semantic", "semantic", float(match.similarity), match.matched_text)

    def _forget_semantic(self, keys: list[str]) -> None:
        sem = self.semantic
        if sem is None:
            return
        try:
            for k in keys:
                sem.remove(k)
        except Exception as exc:
            self._semantic_failed(exc)

    def _semantic_failed(self, exc: Exception) -> None:
        self.semantic_counters.incr("errors")
        with self._warn_lock:
            if self._semantic_warned:
                return
            self._semantic_warned = True
        warnings.warn(
            f"semantic cache tier failed ({type(exc).__name__}: {exc}); treating as a miss",
            RuntimeWarning,
            stacklevel=4,
        )

    # ---- store ----

    def store(
        self, request: Request, result: StreamResult, *, backend: str = "", done_seen: bool = True
    ) -> bool:
        """Store a complete answer. Failed, cancelled, truncated and bypassed responses are never stored.

        Never raises for a failing tier: False when no tier took the entry (see `stats_frame()`)."""
        if not storable(result, done_seen=done_seen) or self.bypasses(request):
            self.counters.incr("not_stored")
            return False
        try:
            key = self.key(request, backend=backend)
            entry = CacheEntry.from_result(key, result)
        except Exception as exc:
            self.store_failed(exc)
            return False
        stored = False
        for tier in self.tiers:
            stored = self._put(tier, entry) or stored
        if not stored:
            self.counters.incr("not_stored")
            return False
        if self.semantic is not None:
            try:
                self.semantic.add(self.partition(request, backend=backend), request.last_user_text, key)
                self.semantic_counters.incr("stores")
            except Exception as exc:
                self._semantic_failed(exc)
        self.counters.incr("stores")
        return True

    def store_failed(self, exc: BaseException) -> None:
        """A store that failed outside any tier (e.g. an answer that cannot be encoded): counted, warned once
        per kind, and the answer is still the caller's. Used by the client's cache runs too."""
        self.counters.incr("not_stored")
        self._health.failed("store", exc, advice="the answer was returned but not cached")

    # ---- replay ----

    def replay(
        self, hit: CacheHit, request: Request, *, timing: bool | None = None, backend: str | None = None,
        optimizations: Mapping[str, Any] | None = None, sent_ns: int | None = None,
    ) -> Replay:
        """A sync stream of the stored chunks (original boundaries; original gaps when `timing`).

        `sent_ns` (perf_counter_ns) is the request's send stamp; pass the moment before `lookup` so the
        hit's TTFT includes the lookup. Default: when the replay starts. `areplay` takes the same arguments.
        """
        timing = self.replay_timing if timing is None else timing
        source = ReplaySource.from_hit(hit, timing=timing, sent_ns=sent_ns)
        return Replay(request, replay_starter(source, request, backend=backend, optimizations=optimizations))

    def areplay(self, hit: CacheHit, request: Request, **options: Any) -> AsyncReplay:
        """The asyncio form of `replay` (same arguments)."""
        return AsyncReplay(request, self.replay(hit, request, **options).starter)

    # ---- statistics ----

    def stats(self) -> dict[str, dict[str, int]]:
        out = {t.name: t.counters.snapshot() for t in self.tiers}
        if self.semantic is not None:
            out["semantic"] = self.semantic_counters.snapshot()
        out["total"] = self.counters.snapshot()
        return out

    def stats_frame(self) -> pl.DataFrame:
        """One row per tier plus `total`: lookups, hits, misses, stores, evictions, bytes, hit_rate, ...

        ``errors``: failed tier operations; ``skipped``: stores a failing tier did not make (the answer was
        still returned); ``last_error``: the most recent real error of the tier. Never raises: a tier whose
        size cannot be read right now shows ``entries``/``bytes`` as null."""
        rows: list[dict[str, Any]] = []

        def row(
            tier: str,
            c: dict[str, int],
            nbytes: int | None,
            entries: int | None,
            last_error: BaseException | None = None,
        ) -> None:
            lookups = c.get("hits", 0) + c.get("misses", 0)
            rows.append(
                {
                    "tier": tier,
                    "lookups": lookups,
                    "hits": c.get("hits", 0),
                    "misses": c.get("misses", 0),
                    "stores": c.get("stores", 0),
                    "evictions": c.get("evictions", 0),
                    "expirations": c.get("expirations", 0),
                    "errors": c.get("errors", 0),
                    "skipped": c.get("skipped", 0),
                    "bytes": nbytes,
                    "entries": entries,
                    "hit_rate": c.get("hits", 0) / lookups if lookups else None,
                    "last_error": None
                    if last_error is None
                    else f"{type(last_error).__name__}: {last_error}"[:300],
                }
            )

        for t in self.tiers:
            entries, nbytes = _gauges(t)
            health = getattr(t, "health", None)
            last = health.last_error if isinstance(health, TierHealth) else None
            guard = self._guards.get(t.name)
            if guard is not None and guard.last_error is not None:
                last = guard.last_error
            row(t.name, t.counters.snapshot(), nbytes, entries, last)
        if self.semantic is not None:
            row("semantic", self.semantic_counters.snapshot(), None, None)
        total = self.counters.snapshot()
        row("total", total, None, None, self._health.last_error)
        rows[-1]["bypass"] = total.get("bypass", 0)
        counts = ("lookups", "hits", "misses", "stores", "evictions", "expirations", "errors", "skipped")
        schema = {"tier": pl.Utf8, **dict.fromkeys((*counts, "bytes", "entries"), pl.Int64)}
        schema |= {"hit_rate": pl.Float64, "last_error": pl.Utf8, "bypass": pl.Int64}
        return pl.DataFrame(rows, schema=schema)

    def events_frame(self) -> pl.DataFrame:
        """Recent lookups: t_ms, tier, kind (exact, semantic, miss, bypass), similarity, lookup_us."""
        return self.log.frame()

    # ---- housekeeping ----

    def sweep(self) -> int:
        """Expire due memory entries now (small batches; lookups are never blocked for long)."""
        return self.memory.sweep()

    def clear(self, *, all_namespaces: bool = False) -> None:
        """Drop this namespace's entries in every tier (``all_namespaces=True``: every namespace sharing the
        disk file or Redis prefix). Counters are kept. Raises `CacheError` if a tier could not be cleared
        (after clearing the others): a clear that silently did nothing could keep answers meant to go."""
        failed: list[str] = []
        for t in self.tiers:
            try:
                t.clear(all_namespaces=all_namespaces)
            except Exception as exc:
                failed.append(f"{t.name}: {exc}")
        clear = getattr(self.semantic, "clear", None)
        if callable(clear):
            clear()
        if failed:
            raise CacheError("could not clear " + "; ".join(failed), hint="see the tier's message")

    def repair(self) -> RepairReport | None:
        """Rebuild a damaged disk tier from its readable rows (`DiskTier.repair`); None without one."""
        if self.disk is None:
            return None
        return self.disk.repair()

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
        if self.redis is not None:
            self.redis.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gauges(tier: _Tier) -> tuple[int | None, int | None]:
    """(entries, bytes), None where the tier cannot tell right now; never raises."""
    gauges = getattr(tier, "gauges", None)
    try:
        if callable(gauges):
            entries, nbytes = gauges()
            return entries, nbytes
        return len(tier), tier.nbytes
    except Exception:
        return None, None


def _default_semantic() -> SemanticLike:
    # Imported by name at run time: the semantic tier is a separate module that may be absent or broken,
    # and the exact tiers must keep working without it.
    try:
        mod = importlib.import_module("workbench.cache.semantic")
        tier: SemanticLike = mod.SemanticTier()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"semantic_cache is on but workbench.cache.semantic is not usable ({exc})",
            hint="turn semantic_cache off, or pass semantic=... explicitly",
        ) from exc
    return tier
