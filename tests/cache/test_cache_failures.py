"""A failing cache never costs an answer: full disk, corrupt pages, read-only files, a held lock, Redis down.

Real failures where the machine allows them: a small tmpfs that fills up, a tmpfs remounted read-only (both
need root with CAP_SYS_ADMIN; elsewhere those cases skip, and the SQLite-level twins below still run:
``max_page_count`` gives the same SQLITE_FULL, ``query_only`` the same SQLITE_READONLY), pages of the file
overwritten with garbage, a write lock held by another connection. Every case streams from the simulator
through a real `Client` with the cache attached, and checks: every stream returns the answer an uncached
client gets, the warning shows once per kind, the counters show, and what is on disk is right.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from workbench._types import Request, StreamResult
from workbench.cache import CacheEntry, CacheTierWarning, DiskTier, ResponseCache
from workbench.client import AsyncClient, Client
from workbench.simulator import Profile, Simulator

PROMPTS = [f"question {i}: why does the disk fill up?" for i in range(40)]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # answers of ~1.5 kB each, so a small file system fills after a few stores
    with Simulator(Profile.instant(default_tokens_min=200, default_tokens_max=300, seed=5)) as s:
        yield s


@pytest.fixture(scope="module")
def reference(sim: Simulator) -> dict[str, str]:
    """prompt -> the answer an uncached client gets (the simulator is deterministic per prompt)."""
    with Client(sim.backend("openai")) as c:
        return {p: c.run(req(p)).text for p in PROMPTS}


def req(prompt: str) -> Request:
    return Request.chat("sim-small", prompt, temperature=0)


def run_sync(sim: Simulator, cache: ResponseCache, prompts: list[str]) -> list[StreamResult]:
    with Client(sim.backend("openai"), cache=cache) as c:
        return [c.run(req(p)) for p in prompts]


def run_async(sim: Simulator, cache: ResponseCache, prompts: list[str]) -> list[StreamResult]:
    import asyncio

    async def go() -> list[StreamResult]:
        async with AsyncClient(sim.backend("openai"), cache=cache) as c:
            return [await c.run(req(p)) for p in prompts]

    return asyncio.run(go())


RUNNERS = {"sync": run_sync, "async": run_async}


def answered(results: list[StreamResult], prompts: list[str], reference: dict[str, str]) -> None:
    """Every stream succeeded and returned exactly the uncached answer."""
    assert [r.status for r in results] == ["ok"] * len(prompts)
    assert [r.text for r in results] == [reference[p] for p in prompts]


def tier_warnings(caught: list[warnings.WarningMessage], kind: str) -> list[str]:
    """The CacheTierWarnings of one kind ("" for all of them)."""
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, CacheTierWarning) and f"({kind}" in str(w.message)
    ]


def disk_row(cache: ResponseCache) -> dict[str, object]:
    frame = cache.stats_frame()
    return frame.filter(frame["tier"] == "disk").row(0, named=True)


def stored_rows(path: Path, reference: dict[str, str]) -> int:
    """The file is sound and every row in it decodes to the right answer for its prompt."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
    except sqlite3.OperationalError:  # a read-only mount without the WAL side files: nothing can change it
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
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
    """mount(size) -> a fresh tmpfs of that size; skipped with the reason where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount(8) on this machine: the real full / read-only file system cases need it")
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(d)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode != 0:
            why = r.stderr.strip() or f"exit {r.returncode}"
            # not a missing package: a container without CAP_SYS_ADMIN; the SQLite-level twins still run
            pytest.skip(f"cannot mount a tmpfs here ({why}); needs root with CAP_SYS_ADMIN")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def remount_read_only(d: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True, capture_output=True, timeout=30)


# ---- disk full ---------------------------------------------------------------------------------------


def _fill_tmpfs(tmpfs: Callable[[str], Path], tmp_path: Path) -> tuple[Path, Callable[[DiskTier], None]]:
    return tmpfs("256k") / "cache.sqlite", lambda d: None


def _fill_page_cap(tmpfs: Callable[[str], Path], tmp_path: Path) -> tuple[Path, Callable[[DiskTier], None]]:
    def cap(d: DiskTier) -> None:
        # SQLite's own size cap: past it every write fails with SQLITE_FULL, as on a full disk
        assert d._db is not None
        (pages,) = d._db.execute("PRAGMA page_count").fetchone()
        d._db.execute(f"PRAGMA max_page_count = {pages + 8}")

    return tmp_path / "cache.sqlite", cap


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fill", ["tmpfs", "page_cap"])
def test_full_disk_never_costs_an_answer(
    sim: Simulator,
    reference: dict[str, str],
    tmpfs: Callable[[str], Path],
    tmp_path: Path,
    fill: str,
    mode: str,
) -> None:
    path, cap = (_fill_tmpfs if fill == "tmpfs" else _fill_page_cap)(tmpfs, tmp_path)
    cache = ResponseCache(disk=path)
    assert cache.disk is not None
    cap(cache.disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # our own once-per-kind rule is what is under test
        results = RUNNERS[mode](sim, cache, PROMPTS)
    answered(results, PROMPTS, reference)
    assert all(r.cache == "miss" for r in results)
    full = tier_warnings(caught, "SQLITE_FULL")
    assert len(full) == 1, [str(w.message) for w in caught]
    assert "cannot rollback" not in full[0] and "repair" not in full[0]
    row = disk_row(cache)
    stored, skipped = row["stores"], row["skipped"]
    assert isinstance(stored, int) and isinstance(skipped, int)
    assert 0 < stored < len(PROMPTS) and stored + skipped == len(PROMPTS)
    assert row["errors"] == skipped and "full" in str(row["last_error"])
    assert cache.stats_frame().filter(cache.stats_frame()["tier"] == "total")["stores"][0] == len(PROMPTS)
    cache.close()
    assert stored_rows(path, reference) == stored  # nothing half-written, nothing wrong
    print(
        f"\ndisk full ({fill}, {mode}): {len(PROMPTS)}/{len(PROMPTS)} answers, {stored} stored, {skipped} skipped"
    )
    # and what did fit is served again after a restart, by the disk tier, with the right text
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = ResponseCache(disk=path)
        results = RUNNERS[mode](sim, again, PROMPTS)
    answered(results, PROMPTS, reference)
    assert sum(r.cache == "exact" for r in results) == stored
    again.close()


# ---- corruption --------------------------------------------------------------------------------------


def _populate(sim: Simulator, path: Path, prompts: list[str]) -> None:
    cache = ResponseCache(disk=path)
    run_sync(sim, cache, prompts)
    assert len(cache.disk or []) == len(prompts)
    cache.close()
    assert not Path(f"{path}-wal").exists()  # checkpointed: every page is in the main file now


def _garbage(path: Path, pages: list[int], seed: int) -> None:
    rnd = random.Random(seed)
    con = sqlite3.connect(path)
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    with path.open("r+b") as f:
        for p in pages:
            junk = bytearray(rnd.randbytes(size))
            junk[0] = 0xFF  # never a valid b-tree page type, whatever the random bytes say
            f.seek((p - 1) * size)
            f.write(junk)


def _leaf_pages(path: Path, name: str) -> list[tuple[int, int]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (name,)
        ).fetchall()
    finally:
        con.close()
    return [(int(p), int(n)) for p, n in rows]


def test_corrupt_pages_cost_no_answer_and_repair_keeps_every_readable_row(
    sim: Simulator, reference: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    _populate(sim, path, PROMPTS)
    leaves = _leaf_pages(path, "entries")
    assert len(leaves) >= 6
    bad = [leaves[2], leaves[len(leaves) // 2]]
    lost = sum(n for _, n in bad)
    ns_index = _leaf_pages(path, "entries_ns")
    _garbage(path, [p for p, _ in bad] + [ns_index[0][0]], seed=11)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = ResponseCache(disk=path)
        results = run_sync(sim, cache, PROMPTS)
        len(cache.disk or [])  # never raises
        frame = cache.stats_frame()  # never raises
    answered(results, PROMPTS, reference)
    assert sum(r.cache == "exact" for r in results) == len(PROMPTS) - lost
    corrupt = tier_warnings(caught, "SQLITE_CORRUPT")
    assert len(corrupt) == 1 and "repair()" in corrupt[0]
    row = frame.filter(frame["tier"] == "disk").row(0, named=True)
    assert row["errors"] >= lost and "malformed" in str(row["last_error"])
    assert row["entries"] is None  # the count crosses the damaged index page: unknown, not a made-up 0
    print(
        f"\ncorrupt pages: {len(PROMPTS)}/{len(PROMPTS)} answers, {lost} rows on damaged pages, one warning"
    )

    report = cache.repair()
    assert report is not None and report.was_corrupt
    assert report.kept == len(PROMPTS) - lost and report.unreadable == lost and report.invalid == 0
    assert len(cache.disk or []) == report.kept
    assert stored_rows(path, reference) == report.kept
    # the repaired file serves what it kept and stores again
    cache.memory.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_sync(sim, cache, PROMPTS)
    answered(results, PROMPTS, reference)
    assert sum(r.cache == "exact" for r in results) == report.kept
    assert tier_warnings(caught, "") == []
    cache.close()
    assert stored_rows(path, reference) == len(PROMPTS)


def test_a_file_that_is_not_a_database(sim: Simulator, reference: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _populate(sim, path, PROMPTS[:5])
    _garbage(path, [1], seed=3)  # the header page: SQLite no longer recognises the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = ResponseCache(disk=path)
        results = run_sync(sim, cache, PROMPTS[:8])
        frame = cache.stats_frame()
    answered(results, PROMPTS[:8], reference)
    notadb = tier_warnings(caught, "SQLITE_NOTADB")
    assert len(notadb) == 1 and "repair()" in notadb[0] and len(tier_warnings(caught, "")) == 1
    row = frame.filter(frame["tier"] == "disk").row(0, named=True)
    assert row["entries"] is None and row["bytes"] is None and row["skipped"] == 8
    assert len(cache.disk or []) == 0
    report = cache.repair()
    assert report is not None and report.was_corrupt and report.kept == 0
    cache.memory.clear()
    answered(run_sync(sim, cache, PROMPTS[:8]), PROMPTS[:8], reference)
    cache.close()
    assert stored_rows(path, reference) == 8


# ---- read-only ---------------------------------------------------------------------------------------


def test_read_only_file_system_still_serves_hits(
    sim: Simulator, reference: dict[str, str], tmpfs: Callable[[str], Path]
) -> None:
    d = tmpfs("4m")
    path = d / "cache.sqlite"
    _populate(sim, path, PROMPTS[:20])
    remount_read_only(d)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = ResponseCache(disk=path)
        results = run_sync(sim, cache, PROMPTS[:25])
    answered(results, PROMPTS[:25], reference)
    assert cache.disk is not None and cache.disk.readonly
    assert [r.cache for r in results] == ["exact"] * 20 + ["miss"] * 5
    assert len(tier_warnings(caught, "")) == 1
    row = disk_row(cache)
    assert row["hits"] == 20 and row["skipped"] == 5 and row["entries"] == 20
    cache.close()
    assert stored_rows(path, reference) == 20


def test_turned_read_only_while_open(sim: Simulator, reference: dict[str, str], tmp_path: Path) -> None:
    """The reported bug: a lookup wrote last_access, so a read-only file failed even hits."""
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(disk=path)
    run_sync(sim, cache, PROMPTS[:10])
    assert cache.disk is not None and cache.disk._db is not None
    cache.disk._db.execute("PRAGMA query_only = ON")  # every write now fails with SQLITE_READONLY
    cache.memory.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_sync(sim, cache, PROMPTS[:15])
    answered(results, PROMPTS[:15], reference)
    assert [r.cache for r in results] == ["exact"] * 10 + ["miss"] * 5
    ro = tier_warnings(caught, "SQLITE_READONLY")
    assert len(ro) == 1 and len(tier_warnings(caught, "")) == 1
    row = disk_row(cache)
    assert row["skipped"] == 5 and row["hits"] == 10 and cache.disk.readonly
    cache.close()
    assert stored_rows(path, reference) == 10


# ---- locked, Redis down, a tier that raises ------------------------------------------------------------


def test_a_lock_held_elsewhere_skips_stores_but_not_lookups(
    sim: Simulator, reference: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    _populate(sim, path, PROMPTS[:5])
    cache = ResponseCache(disk=DiskTier(path, busy_timeout_ms=50))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing, and takes its time
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = run_sync(sim, cache, PROMPTS[:10])
    finally:
        other.execute("ROLLBACK")
        other.close()
    answered(results, PROMPTS[:10], reference)
    assert [r.cache for r in results] == ["exact"] * 5 + ["miss"] * 5  # WAL readers never wait for a writer
    assert len(tier_warnings(caught, "SQLITE_BUSY")) == 1
    assert disk_row(cache)["skipped"] == 5
    # the lock is gone: the next store goes through (a held lock is not a reason to stop writing)
    cache.memory.clear()
    answered(run_sync(sim, cache, PROMPTS[5:10]), PROMPTS[5:10], reference)
    assert disk_row(cache)["stores"] == 5
    cache.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redis_down_costs_no_answer(sim: Simulator, reference: dict[str, str], mode: str) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = ResponseCache(redis=f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = RUNNERS[mode](sim, cache, PROMPTS[:6])
    answered(results, PROMPTS[:6], reference)
    msgs = tier_warnings(caught, "")
    assert len(msgs) == 1 and "hunter2-secret" not in msgs[0]
    frame = cache.stats_frame()
    row = frame.filter(frame["tier"] == "redis").row(0, named=True)
    assert row["errors"] >= 1 and row["skipped"] == 6 and row["entries"] is None
    cache.close()


def test_a_tier_that_raises_is_a_miss_and_a_skipped_store(
    sim: Simulator, reference: dict[str, str], tmp_path: Path
) -> None:
    class Broken(DiskTier):
        """A tier of the user's that raises instead of reporting (the cache's last line of defence)."""

        def get(self, key: str) -> CacheEntry | None:
            raise RuntimeError("lookup exploded")

        def put(self, entry: CacheEntry) -> bool:
            raise OSError(28, "No space left on device")

    cache = ResponseCache(disk=Broken(tmp_path / "c.sqlite"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_sync(sim, cache, PROMPTS[:6])
    answered(results, PROMPTS[:6], reference)
    kinds = sorted(m.split("(")[1].split(":")[0] for m in tier_warnings(caught, ""))
    assert kinds == ["OSError", "RuntimeError"]  # once per kind, not per request
    row = disk_row(cache)
    assert row["errors"] == 12 and row["skipped"] == 6 and "No space left" in str(row["last_error"])
    # the memory tier still works: the repeat is a hit
    assert run_sync(sim, cache, PROMPTS[:1])[0].cache == "exact"
    cache.close()


def test_tmpfs_is_a_real_size_capped_file_system(tmpfs: Callable[[str], Path]) -> None:
    """The mount helper itself, so the cases above mean what they say."""
    d = tmpfs("64k")
    assert d.is_mount()
    with pytest.raises(OSError) as exc:
        (d / "big").write_bytes(b"x" * 200_000)
    assert exc.value.errno == 28  # ENOSPC
