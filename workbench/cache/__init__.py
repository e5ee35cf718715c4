"""Response caches: exact (memory LRU+TTL -> disk -> Redis) and semantic, replayed as real streams.

Faults of the published caches (GPTCache, redisvl, LangChain, LiteLLM) this package avoids: keys that ignore
the model or earlier turns, streamed hits replayed as one lump, no hit type on the result, no single-flight,
pickle on disk, leaks across tenants.

The key (`request_key`) is ``blake2b-128`` of the sorted-key orjson of this normalised dict; key order in
dicts never matters, and it is the same in every process:

==========================================  ==================================================================
field                                       why it is in the key
==========================================  ==================================================================
``v``                                       key layout version (``KEY_VERSION``)
``namespace``                               tenant / experiment namespace: two namespaces never share an entry
``backend``                                 normalised server URL (+ credential hash, if asked); never a name
``endpoint``                                chat or completion
``model``                                   model name
``messages``                                all messages in order: system prompt, earlier turns, last turn
``prompt``                                  completion prompt
``tools``                                   tool definitions
``temperature, top_p, seed, max_tokens,     sampling parameters (``1.0`` and ``1`` are one value)
stop``
``options``                                 every other server option (``num_ctx``, penalties, ...)
``include_usage``                           whether the stream carries a usage chunk
``partition``                               False here; True in `partition_key` (last user turn left out)
==========================================  ==================================================================

`partition_key` is the same without the last user turn: the semantic tier matches only within a partition.
Sampled requests (temperature > 0, no seed) are bypassed by default (``temperature_policy="bypass"``) or
cached (``"replay"``). Only complete answers (status ok, end marker seen) are stored.

Use::

    cache = ResponseCache(disk="~/.cache/wb.sqlite", redis="redis://127.0.0.1:6379/0", namespace="team-a")
    cache = ResponseCache.from_optimizations(opts, disk_path=..., redis_url=...)   # None when all off
    with Client(backend, cache=cache) as client:          # AsyncClient(backend, cache=cache) too
        client.run(Request.chat("sim-small", "hi", temperature=0)).cache     # "miss", then "exact"
    cache.stats_frame(); cache.events_frame()

Tiers, fastest first: memory (`ExactTier`: LRU + TTL, max entries and bytes) -> disk (`DiskTier`: SQLite
WAL, zstd) -> Redis (`RedisTier`, shared) -> semantic (any `SemanticLike`, e.g.
`workbench.cache.semantic.SemanticTier`). Concurrent identical misses through one client make one backend
call (`workbench.cache.singleflight`).

Every result carries ``cache`` (``off | miss | exact | semantic | bypass``), ``cache_similarity``,
``cache_matched_prompt``, ``saved_ms`` and ``saved_tokens``. Statistics: ``ResponseCache.stats_frame()`` and
``ResponseCache.events_frame()`` (polars), from lock-free per-thread counters (`workbench.cache.counters`).
"""

from workbench.cache._gate import CacheGate, FollowerSource, follower_timeout
from workbench.cache.counters import CacheTierWarning, Counters, EventLog
from workbench.cache.disk import DiskTier, RepairReport
from workbench.cache.entry import CacheEntry, storable
from workbench.cache.exact import ExactTier
from workbench.cache.key import (
    KEY_FIELDS,
    KEY_VERSION,
    TemperaturePolicy,
    backend_identity,
    is_sampled,
    partition_key,
    request_key,
)
from workbench.cache.redis import RedisTier, RedisUnavailableWarning
from workbench.cache.replay import AsyncReplay, Replay, ReplaySource
from workbench.cache.singleflight import SingleFlight
from workbench.cache.tiers import CacheHit, ResponseCache, SemanticLike, SemanticMatchLike

__all__ = [
    "KEY_FIELDS",
    "KEY_VERSION",
    "AsyncReplay",
    "CacheEntry",
    "CacheGate",
    "CacheHit",
    "CacheTierWarning",
    "Counters",
    "DiskTier",
    "EventLog",
    "ExactTier",
    "FollowerSource",
    "RedisTier",
    "RedisUnavailableWarning",
    "RepairReport",
    "Replay",
    "ReplaySource",
    "ResponseCache",
    "SemanticLike",
    "SemanticMatchLike",
    "SingleFlight",
    "TemperaturePolicy",
    "backend_identity",
    "follower_timeout",
    "is_sampled",
    "partition_key",
    "request_key",
    "storable",
]
