from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from _cache_helpers import RedisServer, build_result

from workbench._exceptions import CacheError, ConfigError
from workbench._types import Request
from workbench.cache import RedisTier, ResponseCache
from workbench.optimizations import Optimizations


@dataclass(frozen=True)
class Match:
    key: str
    similarity: float
    matched_text: str


class WordSemantic:
    """A tiny stand-in with the SemanticTier interface: matches prompts sharing >= 2 words, per partition."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.removed: list[str] = []

    def lookup(self, partition: str, text: str) -> Match | None:
        words = set(text.lower().split())
        best = None
        for p, t, k in self.rows:
            if p != partition:
                continue
            common = len(words & set(t.lower().split()))
            if common >= 2 and (best is None or common > best[0]):
                best = (common, t, k)
        return None if best is None else Match(best[2], 0.9, best[1])

    def add(self, partition: str, text: str, key: str) -> None:
        self.rows.append((partition, text, key))

    def remove(self, key: str) -> None:
        self.removed.append(key)
        self.rows = [r for r in self.rows if r[2] != key]


def req(prompt: str = "what is a cache", **kw: object) -> Request:
    kw.setdefault("temperature", 0)
    return Request.chat("sim-small", prompt, **kw)  # type: ignore[arg-type]


def test_exact_hit_miss_and_stats_frame() -> None:
    c = ResponseCache()
    r = req()
    assert c.lookup(r) is None
    assert c.store(r, build_result(r, ["a", "b"]))
    hit = c.lookup(req())
    assert hit is not None and hit.kind == "exact" and hit.tier == "memory" and hit.lookup_us > 0
    f = c.stats_frame()
    assert f.columns[:8] == [
        "tier",
        "lookups",
        "hits",
        "misses",
        "stores",
        "evictions",
        "expirations",
        "errors",
    ]
    mem = f.filter(pl.col("tier") == "memory").row(0, named=True)
    assert mem["lookups"] == 2 and mem["hits"] == 1 and mem["hit_rate"] == 0.5 and mem["bytes"] > 0
    total = f.filter(pl.col("tier") == "total").row(0, named=True)
    assert total["lookups"] == 2 and total["stores"] == 1
    ev = c.events_frame()
    assert ev.columns == ["t_ms", "tier", "kind", "similarity", "lookup_us"]
    assert ev["kind"].to_list() == ["miss", "exact"]


def test_failed_cancelled_truncated_and_replayed_results_are_not_stored() -> None:
    c = ResponseCache()
    r = req()
    assert not c.store(r, build_result(r, status="error"))
    assert not c.store(r, build_result(r, status="cancelled"))
    assert not c.store(r, build_result(r), done_seen=False)  # no end marker: truncated
    stopped = build_result(r)
    stopped.wasted_ms_after_stop = 3.0
    assert not c.store(r, stopped)
    replayed = build_result(r)
    replayed.cache = "exact"
    assert not c.store(r, replayed)
    assert c.lookup(r) is None and len(c.memory) == 0
    assert c.stats()["total"]["not_stored"] == 5


def test_temperature_policy_bypass_and_replay() -> None:
    hot = req(temperature=0.8)
    c = ResponseCache()
    assert c.bypasses(hot)
    assert not c.store(hot, build_result(hot))
    assert c.lookup(hot) is None
    assert c.events_frame()["kind"].to_list() == ["bypass"]
    assert c.stats()["total"]["bypass"] == 1
    c2 = ResponseCache(temperature_policy="replay")
    assert c2.store(hot, build_result(hot)) and c2.lookup(hot) is not None
    with pytest.raises(ConfigError):
        ResponseCache(temperature_policy="sometimes")  # type: ignore[arg-type]


def test_backend_is_part_of_the_key() -> None:
    c = ResponseCache()
    r = req()
    c.store(r, build_result(r), backend="http://a")
    assert c.lookup(r, backend="http://b") is None
    assert c.lookup(r, backend="http://a") is not None


def test_disk_hit_promotes_to_memory(tmp_path: Path) -> None:
    c = ResponseCache(disk=tmp_path / "d.sqlite")
    r = req()
    c.store(r, build_result(r))
    c.memory.clear()
    assert c.lookup(r).tier == "disk"  # type: ignore[union-attr]
    assert c.lookup(r).tier == "memory"  # type: ignore[union-attr]
    c.close()


def test_semantic_tier_partitions_and_dangling_matches() -> None:
    sem = WordSemantic()
    c = ResponseCache(semantic=sem)
    a = req("what is a cache in computing")
    c.store(a, build_result(a, ["A cache ", "stores answers"]))
    para = req("in computing what is a cache exactly")
    hit = c.lookup(para)
    assert hit is not None and hit.kind == "semantic" and hit.similarity == 0.9
    assert hit.matched_prompt == "what is a cache in computing"
    res = c.replay(hit, para).result
    assert res.cache == "semantic" and res.cache_matched_prompt == hit.matched_prompt
    assert res.chunk_texts() == ["A cache ", "stores answers"]
    # same words, different model / system prompt / namespace: another partition, no match
    assert c.lookup(Request.chat("sim-large", para.last_user_text, temperature=0)) is None
    assert c.lookup(req(para.last_user_text, system="Be rude.")) is None
    # the answer leaves every tier: the index entry is removed and the lookup is a miss
    c.memory.clear()
    assert c.lookup(para) is None
    assert sem.removed == [c.key(a)]
    s = c.stats()["semantic"]
    assert s["hits"] == 1 and s["misses"] == 3 and s["evictions"] == 1


def test_exact_off_semantic_on_never_gives_exact_hits() -> None:
    c = ResponseCache(exact=False, semantic=WordSemantic())
    r = req("tell me about caches please")
    c.store(r, build_result(r))
    hit = c.lookup(r)
    assert hit is not None and hit.kind == "semantic"


def test_failing_semantic_tier_degrades_to_miss_with_one_warning() -> None:
    class Broken(WordSemantic):
        def lookup(self, partition: str, text: str) -> Match | None:
            raise RuntimeError("index corrupt")

    c = ResponseCache(exact=False, semantic=Broken())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert c.lookup(req()) is None
        assert c.lookup(req()) is None
    assert len([w for w in caught if "semantic cache tier failed" in str(w.message)]) == 1


def test_from_optimizations(tmp_path: Path) -> None:
    assert ResponseCache.from_optimizations(Optimizations()) is None
    c = ResponseCache.from_optimizations(Optimizations(exact_cache=True))
    assert c is not None and c.exact and c.disk is None and c.semantic is None
    with pytest.raises(ConfigError):
        ResponseCache.from_optimizations(Optimizations(disk_cache=True))
    d = ResponseCache.from_optimizations(Optimizations(disk_cache=True), disk_path=tmp_path / "x.sqlite")
    assert d is not None and d.disk is not None
    d.close()
    sem = WordSemantic()
    s = ResponseCache.from_optimizations(Optimizations(semantic_cache=True), semantic=sem)
    assert s is not None and s.semantic is sem and not s.exact


def test_event_log_is_bounded() -> None:
    c = ResponseCache(log_size=50)
    for i in range(200):
        c.lookup(req(f"q{i}"))
    assert c.events_frame().height == 50
    assert c.stats()["total"]["misses"] == 200


def test_memory_eviction_and_expiry_drop_semantic_entries() -> None:
    sem = WordSemantic()
    c = ResponseCache(semantic=sem, max_entries=2, ttl_s=None)
    reqs = [req(f"question number {i} about caches") for i in range(3)]
    for r in reqs:
        c.store(r, build_result(r))
    assert sem.removed == [c.key(reqs[0])]  # evicted from memory -> gone from the index
    assert [k for _, _, k in sem.rows] == [c.key(reqs[1]), c.key(reqs[2])]


def test_with_disk_the_semantic_entry_outlives_memory(tmp_path: Path) -> None:
    sem = WordSemantic()
    c = ResponseCache(semantic=sem, max_entries=1, disk=tmp_path / "d.sqlite")
    a, b = req("first question about caches"), req("second question about disks")
    c.store(a, build_result(a, ["A"]))
    c.store(b, build_result(b, ["B"]))
    assert sem.removed == []
    hit = c.lookup(req("about caches first question"))
    assert hit is not None and hit.kind == "semantic" and hit.entry.text == "A"
    assert c.memory.peek(c.key(a)) is not None  # promoted back into memory
    c.close()


def test_clear_empties_one_namespace_of_a_shared_disk_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    a, b = ResponseCache(namespace="team-a", disk=path), ResponseCache(namespace="team-b", disk=path)
    ra, rb = req("alpha question"), req("beta question")
    assert a.store(ra, build_result(ra)) and b.store(rb, build_result(rb))
    assert (
        len(a.disk or []) == 1
        and len(b.disk or []) == 1
        and (a.disk and a.disk.nbytes) == (b.disk and b.disk.nbytes)
    )
    a.clear()
    assert a.lookup(ra) is None and len(a.disk or []) == 0
    b.memory.clear()
    hit = b.lookup(rb)
    assert hit is not None and hit.tier == "disk"  # the other namespace in the file is untouched
    a.clear(all_namespaces=True)
    b.memory.clear()
    assert b.lookup(rb) is None and len(b.disk or []) == 0
    a.close()
    b.close()


def test_clear_empties_one_redis_namespace(redis_server: RedisServer) -> None:
    import uuid

    ns_a, ns_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    prefix = f"wbt{uuid.uuid4().hex[:6]}"
    a = ResponseCache(namespace=ns_a, redis=RedisTier(redis_server.url, namespace=ns_a, prefix=prefix))
    b = ResponseCache(namespace=ns_b, redis=RedisTier(redis_server.url, namespace=ns_b, prefix=prefix))
    ra, rb = req("alpha question"), req("beta question")
    assert a.store(ra, build_result(ra)) and b.store(rb, build_result(rb))
    a.clear()
    b.memory.clear()
    assert a.lookup(ra) is None and (b.lookup(rb) or None) is not None
    assert len(a.redis or []) == 0 and len(b.redis or []) == 1
    a.clear(all_namespaces=True)
    b.memory.clear()
    assert b.lookup(rb) is None and len(b.redis or []) == 0
    a.close()
    b.close()


def test_clear_that_cannot_write_raises(tmp_path: Path) -> None:
    c = ResponseCache(disk=tmp_path / "d.sqlite")
    r = req()
    c.store(r, build_result(r))
    assert c.disk is not None and c.disk._db is not None
    c.disk._db.execute("PRAGMA query_only = ON")
    with pytest.raises(CacheError, match="cannot clear the disk cache"):
        c.clear()
    assert len(c.memory) == 0  # the memory tier was cleared all the same
    hit = c.lookup(r)
    assert hit is not None and hit.tier == "disk"  # the disk still holds what could not go: said, not hidden
    c.close()
