from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import Callable

import pytest
import redis
from _cache_helpers import RedisServer, build_result

from workbench._types import Request
from workbench.cache import RedisTier, RedisUnavailableWarning, ResponseCache


def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_store_lookup_ttl_and_prefixed_keys(redis_server: RedisServer) -> None:
    n = ns()
    tier = RedisTier(redis_server.url, namespace=n, ttl_s=30)
    with ResponseCache(redis=tier, namespace=n) as cache:
        req = Request.chat("sim-small", "hello redis", temperature=0)
        assert cache.lookup(req) is None
        assert cache.store(req, build_result(req, ["a", "b"]))
        cache.memory.clear()  # force the lookup down to Redis
        hit = cache.lookup(req)
        assert hit is not None and hit.tier == "redis" and hit.entry.text == "ab"
        assert cache.lookup(req).tier == "memory"  # type: ignore[union-attr]  # promoted
    r = redis.Redis.from_url(redis_server.url)
    keys = sorted(k.decode() for k in r.scan_iter(match=f"wb:{n}:*"))
    assert keys == [f"wb:{n}:e:{cache.key(req)}", f"wb:{n}:stats"]
    ttl_ms = r.pttl(f"wb:{n}:e:{cache.key(req)}")
    assert 0 < ttl_ms <= 30_000
    assert tier.shared_stats() == {"misses": 1, "stores": 1, "hits": 1}
    blob = r.get(f"wb:{n}:e:{cache.key(req)}")
    assert blob is not None and tier.nbytes == len(blob) > 0
    row = cache.stats_frame().filter(tier="redis").row(0, named=True)
    assert row["bytes"] == len(blob) and row["entries"] == 1


def test_namespaces_never_leak(redis_server: RedisServer) -> None:
    a, b = ns(), ns()
    req = Request.chat("m", "secret question", temperature=0)
    with (
        ResponseCache(redis=redis_server.url, namespace=a) as ca,
        ResponseCache(redis=redis_server.url, namespace=b) as cb,
    ):
        ca.store(req, build_result(req, ["tenant A's answer"]))
        assert cb.lookup(req) is None
        # even a raw lookup under the other tenant's hashed key finds nothing: the prefix differs too
        assert cb.redis.peek(ca.key(req)) is None  # type: ignore[union-attr]
        assert ca.lookup(req) is not None


def test_shared_by_two_processes(redis_server: RedisServer) -> None:
    n = ns()
    code = """
        import sys, time
        from workbench._types import Request, TextDelta, DoneEvent
        from workbench.cache import ResponseCache
        from workbench.metrics.recorder import Recorder
        url, n, role = sys.argv[1], sys.argv[2], sys.argv[3]
        c = ResponseCache(redis=url, namespace=n)
        req = Request.chat("sim-small", "shared prompt", temperature=0)
        if role == "writer":
            rec = Recorder(req, backend="", protocol="ollama"); rec.sent()
            for t in ["from ", "process ", "one"]:
                rec.event(TextDelta(t, time.perf_counter_ns()))
            rec.event(DoneEvent("stop"))
            assert c.lookup(req) is None
            assert c.store(req, rec.finish())
            print(c.key(req))
        else:
            hit = c.lookup(req)
            print(hit.tier, "|".join(c.replay(hit, req).result.chunk_texts()), c.key(req))
    """

    def run(role: str) -> str:
        p = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), redis_server.url, n, role],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    key = run("writer")
    assert run("reader") == f"redis from |process |one {key}"
    stats = RedisTier(redis_server.url, namespace=n).shared_stats()
    assert stats == {"misses": 1, "stores": 1, "hits": 1}  # both processes added to the same counters


def test_redis_down_is_a_miss_with_one_warning(redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    tier = RedisTier(server.url, namespace=ns(), retry_after_s=0.2, socket_timeout_s=0.3)
    req = Request.chat("m", "q", temperature=0)
    with ResponseCache(redis=tier) as cache:
        cache.store(req, build_result(req))
        cache.memory.clear()
        assert cache.lookup(req) is not None
        cache.memory.clear()
        server.stop()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(5):
                assert cache.lookup(req) is None  # no exception reaches the caller
            assert cache.store(req, build_result(req))  # memory still stores
            time.sleep(0.25)  # past retry_after_s: it retries, fails again, still one outage
            assert cache.lookup(Request.chat("m", "other", temperature=0)) is None
        w = [c for c in caught if issubclass(c.category, RedisUnavailableWarning)]
        assert len(w) == 1, [str(c.message) for c in caught]
        assert "unavailable" in str(w[0].message)
        assert tier.outages == 1 and not tier.available
        assert tier.counters.get("errors") >= 1


def test_redis_unreachable_from_the_start() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tier = RedisTier("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
        assert tier.get("k") is None
        assert tier.shared_stats() == {}
    assert sum(issubclass(c.category, RedisUnavailableWarning) for c in caught) == 1


def test_outage_ends_and_a_new_one_warns_again(redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    tier = RedisTier(server.url, namespace=ns(), retry_after_s=0.0, socket_timeout_s=0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tier.get("k") is None and tier.available
        tier._r.connection_pool.disconnect()
        tier._failed(ConnectionError("simulated"))  # one outage
        assert tier.get("k") is None and tier.available  # server is up: outage over
        server.stop()
        assert tier.get("k") is None and not tier.available
    assert sum(issubclass(c.category, RedisUnavailableWarning) for c in caught) == 2
    assert tier.outages == 2


@pytest.mark.parametrize("ttl", [0.2])
def test_ttl_expires_in_redis(redis_server: RedisServer, ttl: float) -> None:
    tier = RedisTier(redis_server.url, namespace=ns(), ttl_s=ttl)
    req = Request.chat("m", "q", temperature=0)
    from workbench.cache import CacheEntry

    tier.put(CacheEntry.from_result("k1", build_result(req)))
    assert tier.get("k1") is not None
    time.sleep(ttl + 0.15)
    assert tier.get("k1") is None
