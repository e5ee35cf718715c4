"""The disk tier of the response cache on a disk that fails: full, a corrupt page, read-only, locked.

The server is the real simulator; the client is the public `Client` / `AsyncClient` with a `ResponseCache`
on disk. A real small tmpfs fills up and is remounted read-only where this machine lets a test mount one
(root with CAP_SYS_ADMIN: skipped with the reason elsewhere, a failure under CI=true where .ci/run runs as
root in a container that allows it). Every case checks: every stream returns the answer an uncached client
gets, a `CacheTierWarning` shows, the disk row of `stats_frame()` counts the failure, and every row left in
the file decodes to the right answer for its prompt (nothing half-written or wrong stored).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _system import in_ci

from workbench import AsyncClient, Client, Request, StreamResult
from workbench.cache import CacheEntry, CacheTierWarning, DiskTier, ResponseCache
from workbench.simulator import Profile, Simulator

PROMPTS = [f"adversarial disk question {i}" for i in range(16)]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # ~1.5 kB answers, so a 256 kB file system fills after a few stores
    with Simulator(Profile.instant(default_tokens_min=200, default_tokens_max=300, seed=11)) as s:
        yield s


@pytest.fixture(scope="module")
def reference(sim: Simulator) -> dict[str, str]:
    with Client(sim.backend("openai")) as c:
        return {p: c.run(req(p)).text for p in PROMPTS}


def req(prompt: str) -> Request:
    return Request.chat("sim-small", prompt, temperature=0)


def run(sim: Simulator, cache: ResponseCache, prompts: list[str], driver: str = "sync") -> list[StreamResult]:
    if driver == "sync":
        with Client(sim.backend("openai"), cache=cache) as c:
            return [c.run(req(p)) for p in prompts]

    async def go() -> list[StreamResult]:
        async with AsyncClient(sim.backend("openai"), cache=cache) as c:
            return [await c.run(req(p)) for p in prompts]

    return asyncio.run(go())


def streamed(cache: ResponseCache, sim: Simulator, prompts: list[str], driver: str = "sync") -> tuple[
    list[StreamResult], list[str]
]:
    """Run the prompts; return the results and the CacheTierWarning messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run(sim, cache, prompts, driver)
    return results, [str(w.message) for w in caught if issubclass(w.category, CacheTierWarning)]


def answered(results: list[StreamResult], prompts: list[str], reference: dict[str, str]) -> None:
    assert [r.status for r in results] == ["ok"] * len(prompts)
    assert [r.text for r in results] == [reference[p] for p in prompts]


def disk_row(cache: ResponseCache) -> dict[str, object]:
    frame = cache.stats_frame()
    return frame.filter(frame["tier"] == "disk").row(0, named=True)


def sound_rows(path: Path, reference: dict[str, str]) -> int:
    """Rows in the file, each checked to decode to the right answer for its prompt."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
    except sqlite3.OperationalError:  # a read-only mount without the WAL side files
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        n = 0
        for key, value in con.execute("SELECT key, value FROM entries"):
            entry = CacheEntry.from_bytes(bytes(value))
            assert entry.key == key and entry.text == reference[entry.prompt]
            n += 1
        return n
    finally:
        con.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs; skipped with the reason where this machine cannot mount (failed in CI)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        why = ""
        if shutil.which("mount") is None:
            why = "no mount(8) on this machine"
        else:
            d = tmp_path / f"fs{len(mounted)}"
            d.mkdir()
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(d)],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                mounted.append(d)
                return d
            why = f"cannot mount a tmpfs ({r.stderr.strip() or r.returncode}); needs root with CAP_SYS_ADMIN"
        if in_ci():
            pytest.fail(f"CI=true and {why}; .ci/run must run where a tmpfs can be mounted", pytrace=False)
        pytest.skip(why)

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_disk_full_costs_no_answer(
    sim: Simulator, reference: dict[str, str], tmpfs: Callable[[str], Path], driver: str
) -> None:
    path = tmpfs("192k") / "cache.sqlite"
    cache = ResponseCache(disk=path)
    results, warned = streamed(cache, sim, PROMPTS, driver)
    answered(results, PROMPTS, reference)
    assert len(warned) == 1 and "full" in warned[0].lower(), warned
    row = disk_row(cache)
    stores, skipped = row["stores"], row["skipped"]
    assert isinstance(stores, int) and isinstance(skipped, int)
    assert skipped > 0 and stores + skipped == len(PROMPTS), row
    assert "full" in str(row["last_error"]).lower()
    cache.close()
    assert sound_rows(path, reference) == stores
    print(f"\ndisk full (tmpfs 192k, {driver}): {len(PROMPTS)}/{len(PROMPTS)} answers, {stores} stored, "
          f"{skipped} skipped, warning: {warned[0][:120]}")


def _populate(sim: Simulator, path: Path, prompts: list[str]) -> None:
    cache = ResponseCache(disk=path)
    run(sim, cache, prompts)
    cache.close()


def test_corrupt_page_costs_no_answer(sim: Simulator, reference: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _populate(sim, path, PROMPTS)
    con = sqlite3.connect(path)
    leaves = [p for (p,) in con.execute(
        "SELECT pageno FROM dbstat WHERE name = 'entries' AND pagetype = 'leaf' ORDER BY pageno")]
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    assert len(leaves) >= 3
    junk = bytearray(random.Random(3).randbytes(size))
    junk[0] = 0xFF  # never a valid b-tree page type
    with path.open("r+b") as f:
        f.seek((leaves[1] - 1) * size)
        f.write(junk)
    cache = ResponseCache(disk=path)
    results, warned = streamed(cache, sim, PROMPTS)
    answered(results, PROMPTS, reference)
    hits = sum(r.cache == "exact" for r in results)
    assert 0 < hits < len(PROMPTS)  # the readable rows still serve; the damaged ones are misses
    assert len(warned) == 1 and "repair()" in warned[0], warned
    row = disk_row(cache)
    assert isinstance(row["errors"], int) and row["errors"] >= len(PROMPTS) - hits
    report = cache.repair()
    assert report is not None and report.kept == hits
    cache.close()
    assert sound_rows(path, reference) == hits
    print(f"\ncorrupt page: {len(PROMPTS)}/{len(PROMPTS)} answers, {hits} hits, repair kept {report.kept}")


def test_read_only_disk_still_serves_hits(
    sim: Simulator, reference: dict[str, str], tmpfs: Callable[[str], Path]
) -> None:
    d = tmpfs("4m")
    path = d / "cache.sqlite"
    _populate(sim, path, PROMPTS[:8])
    subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True, capture_output=True, timeout=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = ResponseCache(disk=path)  # opening for writing fails: the warning comes here
        results, warned = streamed(cache, sim, PROMPTS)
    warned += [str(w.message) for w in caught if issubclass(w.category, CacheTierWarning)]
    answered(results, PROMPTS, reference)
    assert [r.cache for r in results] == ["exact"] * 8 + ["miss"] * 8
    assert len(warned) == 1 and "read-only" in warned[0], warned
    row = disk_row(cache)
    assert row["hits"] == 8 and row["skipped"] == 8
    cache.close()
    assert sound_rows(path, reference) == 8


def test_locked_database_skips_stores_not_answers(
    sim: Simulator, reference: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    _populate(sim, path, PROMPTS[:4])
    cache = ResponseCache(disk=DiskTier(path, busy_timeout_ms=50))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        results, warned = streamed(cache, sim, PROMPTS[:8], "async")
    finally:
        other.execute("ROLLBACK")
        other.close()
    answered(results, PROMPTS[:8], reference)
    assert [r.cache for r in results] == ["exact"] * 4 + ["miss"] * 4
    assert len(warned) == 1 and "BUSY" in warned[0], warned
    assert disk_row(cache)["skipped"] == 4
    cache.close()
    assert sound_rows(path, reference) == 4
