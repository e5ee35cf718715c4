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


_OLD_SCHEMA = """
CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL,
                      expires REAL NOT NULL, last_access REAL NOT NULL);
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), total INTEGER NOT NULL);
INSERT INTO meta (id, total) VALUES (0, 0);
CREATE TRIGGER entries_ins AFTER INSERT ON entries
    BEGIN UPDATE meta SET total = total + NEW.size WHERE id = 0; END;
CREATE TRIGGER entries_del AFTER DELETE ON entries
    BEGIN UPDATE meta SET total = total - OLD.size WHERE id = 0; END;
"""


def test_a_file_from_before_namespaces_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(_OLD_SCHEMA)
    blob = entry("legacy").to_bytes()
    con.execute("INSERT INTO entries VALUES (?,?,?,?,?)", ("legacy", blob, len(blob), 1e300, time.time()))
    con.commit()
    con.close()
    d = DiskTier(path)
    got = d.get("legacy")
    assert got is not None and got.text == "hello"  # old rows stay readable
    assert d.put(entry("new"))
    assert len(d) == 1  # the old row belongs to no namespace ('')...
    d.clear()
    assert d.get("legacy") is not None  # ...so clearing this namespace leaves it
    d.clear(all_namespaces=True)
    assert d.get("legacy") is None and d.nbytes == 0
    d.close()


def test_hits_reach_the_file_at_close_and_order_evictions_in_another_process(tmp_path: Path) -> None:
    one = len(entry("probe", "x" * 2000).to_bytes())
    path = tmp_path / "c.sqlite"
    d = DiskTier(path, max_bytes=one * 3 + one // 2)
    for i in range(3):
        d.put(entry(f"k{i}", "x" * 2000))
        time.sleep(0.002)
    assert d.get("k0") is not None  # k0 is now the most recently used, k1 the least
    con = sqlite3.connect(path)
    before = dict(con.execute("SELECT key, last_access FROM entries").fetchall())
    d.close()  # the lookup wrote nothing; close writes the access time
    after = dict(con.execute("SELECT key, last_access FROM entries").fetchall())
    con.close()
    assert after["k0"] > before["k0"] and after["k1"] == before["k1"]
    other = DiskTier(path, max_bytes=one * 3 + one // 2)  # "another process": a fresh connection
    other.put(entry("k3", "x" * 2000))
    assert other.peek("k1") is None and other.peek("k0") is not None
    other.close()
