from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _cache_helpers import build_result

from workbench._types import Request
from workbench.cache import CacheEntry, DiskTier, ResponseCache


def entry(key: str, text: str = "hello") -> CacheEntry:
    return CacheEntry.from_result(
        key, build_result(Request.chat("m", key), [text[: len(text) // 2], text[len(text) // 2 :]])
    )


def run_py(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_disk_entry_survives_and_is_read_by_a_second_process(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    req = Request.chat("sim-small", "what is WAL?", temperature=0)
    with ResponseCache(disk=db) as cache:
        res = build_result(req, ["Write-", "ahead ", "log"])
        assert cache.store(req, res)
        key = cache.key(req)
    # a fresh process (a "kernel restart") opens the same file and gets a replayable hit
    got = run_py(f"""
        from workbench._types import Request
        from workbench.cache import ResponseCache
        with ResponseCache(disk={str(db)!r}) as c:
            req = Request.chat("sim-small", "what is WAL?", temperature=0)
            hit = c.lookup(req)
            assert hit is not None and hit.tier == "disk", hit
            r = c.replay(hit, req).result
            print(c.key(req), "|".join(r.chunk_texts()), r.cache)
            # promoted to memory: the second lookup is a memory hit
            assert c.lookup(req).tier == "memory"
    """)
    assert got == f"{key} Write-|ahead |log exact"


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    DiskTier(db).close()
    code = """
        import sys
        from workbench._types import Request
        from workbench.cache import CacheEntry, DiskTier
        from workbench.metrics.recorder import Recorder
        from workbench._types import TextDelta, DoneEvent
        import time
        who = sys.argv[1]
        d = DiskTier(sys.argv[2], busy_timeout_ms=20000)
        for i in range(150):
            req = Request.chat("m", f"{who}-{i}")
            rec = Recorder(req, backend="b", protocol="openai"); rec.sent()
            t = time.perf_counter_ns(); rec.event(TextDelta(f"answer {who} {i}", t)); rec.event(DoneEvent("stop"))
            assert d.put(CacheEntry.from_result(f"{who}-{i}", rec.finish()))
            if i % 10 == 0:
                d.get(f"{who}-{i // 2}")
        print("ok")
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), who, str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("A", "B")
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    d = DiskTier(db)
    assert len(d) == 300
    assert d.get("A-149").text == "answer A 149"  # type: ignore[union-attr]
    assert d.get("B-7").text == "answer B 7"  # type: ignore[union-attr]
    con = sqlite3.connect(db)
    (real,) = con.execute("SELECT SUM(size) FROM entries").fetchone()
    assert d.nbytes == real  # trigger-kept total matches after concurrent writers
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_size_bound_evicts_least_recently_accessed(tmp_path: Path) -> None:
    one = len(entry("probe", "x" * 2000).to_bytes())
    d = DiskTier(tmp_path / "c.sqlite", max_bytes=one * 5 + one // 2)
    for i in range(5):
        d.put(entry(f"k{i}", "x" * 2000))
        time.sleep(0.002)
    assert d.get("k0") is not None  # touch k0: now k1 is the least recently accessed
    d.put(entry("k5", "x" * 2000))
    assert d.nbytes <= d.max_bytes
    assert d.peek("k1") is None and d.peek("k0") is not None and d.peek("k5") is not None
    assert d.counters.get("evictions") == 1


def test_ttl_and_corrupt_rows(tmp_path: Path) -> None:
    d = DiskTier(tmp_path / "c.sqlite", ttl_s=0.05)
    d.put(entry("a"))
    assert d.get("a") is not None
    time.sleep(0.08)
    assert d.get("a") is None and d.counters.get("expirations") == 1
    d2 = DiskTier(tmp_path / "c2.sqlite")
    d2.put(entry("b"))
    con = sqlite3.connect(tmp_path / "c2.sqlite")
    con.execute("UPDATE entries SET value = ? WHERE key = 'b'", (b"not zstd",))
    con.commit()
    assert d2.get("b") is None  # a corrupt row is a miss, counted as an error, and removed
    assert d2.counters.get("errors") == 1 and len(d2) == 0
    assert d2.nbytes == 0
