"""Reading what can still be read from a damaged disk-tier file (used by `DiskTier.repair`).

Candidate rowids come from the table's own b-tree, scanned in rowid order (a damaged page fails the scan:
it resumes past it, seeking further each time), and from every index's b-tree, which lives on pages of its
own. Each candidate row is then read on its own, so a damaged page loses only the rows stored on it; a row
whose value does not decode to an entry of the same key is dropped too.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from workbench._exceptions import CacheError
from workbench.cache.entry import CacheEntry

__all__ = ["salvage"]

def _rowids(src: sqlite3.Connection) -> set[int]:
    found: set[int] = set()
    # 1. The table b-tree in rowid order. A damaged page fails the scan: seek past it, further each time.
    after, step = -(2**63), 1
    for _ in range(200):
        try:
            for (rid,) in src.execute("SELECT rowid FROM entries WHERE rowid > ? ORDER BY rowid", (after,)):
                found.add(int(rid))
                after, step = int(rid), 1
            break
        except sqlite3.Error:
            after, step = after + step, step * 2
            if after > 2**62:
                break
    # 2. Every index holds every row's rowid on pages of its own.
    try:
        indexes = [r[1] for r in src.execute("PRAGMA index_list(entries)")]
    except sqlite3.Error:
        indexes = []
    for name in indexes:
        try:
            for (rid,) in src.execute(f'SELECT rowid FROM entries INDEXED BY "{name}"'):
                found.add(int(rid))
        except sqlite3.Error:
            continue  # keep what this index gave before its damaged page
    return found


def salvage(src: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], int, int]:
    """(rows to keep, rows that could not be read, rows that did not decode)."""
    try:
        cols = {r[1] for r in src.execute("PRAGMA table_info(entries)")}
    except sqlite3.Error:
        return [], 0, 0
    if not {"key", "value", "expires", "last_access"} <= cols:
        return [], 0, 0
    ns = "ns" if "ns" in cols else "''"
    sql = f"SELECT key, value, expires, last_access, {ns} FROM entries WHERE rowid = ?"
    rows: list[tuple[Any, ...]] = []
    unreadable = invalid = 0
    for rid in sorted(_rowids(src)):
        try:
            row = src.execute(sql, (rid,)).fetchone()
        except sqlite3.Error:
            unreadable += 1
            continue
        if row is None:
            continue
        key, value, expires, last_access, namespace = row
        try:
            entry = CacheEntry.from_bytes(bytes(value))
            ok = (
                entry.key == key and isinstance(expires, float | int) and isinstance(last_access, float | int)
            )
        except (CacheError, TypeError):
            ok = False
        if not ok:
            invalid += 1
            continue
        blob = bytes(value)
        rows.append((key, blob, len(blob), float(expires), float(last_access), str(namespace)))
    return rows, unreadable, invalid
