"""Fixtures for the cache tests: a real redis-server on a free loopback port, and result builders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _cache_helpers import MakeResult, RedisServer, build_result, start_redis
from _system import require_binary


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return require_binary("redis-server", "/usr/bin/redis-server")


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests isolate themselves with their own namespace."""
    server = start_redis(redis_binary, tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_factory(redis_binary: str, tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-servers (for tests that stop them); all are stopped at the end."""
    started: list[RedisServer] = []

    def make() -> RedisServer:
        s = start_redis(redis_binary, tmp_path)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def make_result() -> MakeResult:
    return build_result
