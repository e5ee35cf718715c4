"""False-hit audit: a hand-made pair set with hand-computed answers, Wilson intervals, and the fow-cache pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from _system import require_module

from workbench._exceptions import ConfigError
from workbench.cache.audit import AuditResult, audit_semantic_cache, load_fow_pairs, wilson_interval
from workbench.cache.embedders import default_embedder


class TableEmbedder:
    name = "table"
    dim = 5

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: np.asarray(v, np.float32) / np.linalg.norm(v) for k, v in table.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, 5), np.float32)


def _mix(**parts: float) -> list[float]:
    v = [0.0] * 5
    for name, w in parts.items():
        v[int(name[1]) - 1] = w
    rest = 1 - sum(w * w for w in parts.values())
    v[4] += float(np.sqrt(max(rest, 0.0)))
    return v


# a0..a3 are the basis e1..e4; e5 is "noise" orthogonal to every stored text
EMB = TableEmbedder(
    {
        "reset password": _mix(e1=1.0),
        "open sundays": _mix(e2=1.0),
        "weather paris": _mix(e3=1.0),
        "cancel gym": _mix(e4=1.0),
        "forgot password": _mix(e1=0.95),  # paraphrase of pair 0: cos 0.95 to a0
        "closed sundays": _mix(e2=0.92),  # trap for pair 1: cos 0.92 to a1
        "pasta recipe": _mix(),  # nothing close
        "end gym membership": _mix(e1=0.85, e4=0.5),  # closer to ANOTHER pair's a0 than to its own a3
    }
)
PAIRS = pl.DataFrame(
    {
        "a": ["reset password", "open sundays", "weather paris", "cancel gym"],
        "b": ["forgot password", "closed sundays", "pasta recipe", "end gym membership"],
        "same_answer": [True, False, False, True],
        "category": ["paraphrase", "negation", "unrelated", "paraphrase"],
    }
)


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return audit_semantic_cache(EMB, [0.8, 0.9, 0.94, 0.99], PAIRS, budget=0.05, progress=False)


def test_hand_made_pairs_give_hand_computed_counts(result: AuditResult) -> None:
    f = result.frame.sort("min_cosine")
    assert f["min_cosine"].to_list() == [0.8, 0.9, 0.94, 0.99]
    assert f["n"].to_list() == [4, 4, 4, 4]
    # 0.8: b0 -> a0 (right), b1 -> a1 (trap), b3 -> a0 (another pair's entry: wrong)
    assert f["hits"].to_list() == [3, 2, 1, 0]
    assert f["false_hits"].to_list() == [2, 1, 0, 0]
    assert f["correct_hits"].to_list() == [1, 1, 1, 0]
    assert f["hit_rate"].to_list() == pytest.approx([0.75, 0.5, 0.25, 0.0])
    assert f["false_hit_rate"].to_list() == pytest.approx([2 / 3, 0.5, 0.0, 0.0])
    assert f["false_hits_per_query"].to_list() == pytest.approx([0.5, 0.25, 0.0, 0.0])
    assert f["answerable"].to_list() == [2, 2, 2, 2]  # b0 and b3 have an equivalent stored
    assert f["recall"].to_list() == pytest.approx([0.5, 0.5, 0.5, 0.0])
    lo, hi = wilson_interval(2, 3)
    assert f["false_hit_rate_lo"][0] == pytest.approx(lo) and f["false_hit_rate_hi"][0] == pytest.approx(hi)


def test_threshold_for_budget(result: AuditResult) -> None:
    assert result.threshold_for() == 0.94  # the budget given to the audit: 5 %
    assert result.threshold_for(0.5) == 0.9
    assert result.threshold_for(0.25, per="queries") == 0.9
    assert result.threshold_for(0.6, per="queries") == 0.8
    # the Wilson upper bound of 0 false hits in 1 (or 0) hits is far above 5 %
    assert result.threshold_for(0.05, conservative=True) is None


def test_per_query_frame_and_categories(result: AuditResult) -> None:
    q = result.queries.filter(pl.col("min_cosine") == 0.8).sort("pair")
    assert q["hit"].to_list() == [True, True, False, True]
    assert q["matched_pair"].to_list() == [0, 1, None, 0]
    assert q["correct"].to_list() == [True, False, False, False]
    cats = result.by_category(0.8)
    assert dict(zip(cats["category"], cats["false_hits"], strict=True)) == {
        "negation": 1,
        "paraphrase": 1,
        "unrelated": 0,
    }
    with pytest.raises(ConfigError):
        result.by_category(0.5)
    # pair cosines 0.95, 0.5 (equivalent) vs 0.92, 0.0 (not): 3 of the 4 orderings are right
    assert result.pair_auc == pytest.approx(0.75)
    assert "min_cosine 0.800" in result.summary()


def test_equivalence_is_transitive_and_by_text() -> None:
    emb = TableEmbedder({"x": _mix(e1=1.0), "y": _mix(e1=0.99), "z": _mix(e1=0.98), "w": _mix(e2=1.0)})
    pairs = pl.DataFrame({"a": ["x", "y", "w"], "b": ["y", "z", "x"], "same_answer": [True, True, False]})
    r = audit_semantic_cache(emb, [0.9], pairs, progress=False)
    # b="z" may hit a="x" or a="y": both are equivalent to z through x~y~z. The trap pair (w, x) asks "x",
    # which is stored as pair 0's a: the identical text is its own answer, so that hit is right.
    assert r.frame["hits"][0] == 3 and r.frame["false_hits"][0] == 0
    assert r.queries.sort("pair")["matched_pair"][2] == 0
    assert r.conflicts == 0


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="columns"):
        audit_semantic_cache(EMB, [0.9], pl.DataFrame({"a": ["x"]}), progress=False)
    with pytest.raises(ConfigError, match="threshold"):
        audit_semantic_cache(EMB, [1.5], PAIRS, progress=False)
    with pytest.raises(ConfigError):
        audit_semantic_cache(EMB, [], PAIRS, progress=False)


def test_fow_cache_pairs_fast_run() -> None:
    require_module("fow_cache", "the default audit pairs (pip install fow-cache)")
    pairs = load_fow_pairs()
    assert {"a", "b", "same_answer", "category"} <= set(pairs.columns) and len(pairs) == 600
    r = audit_semantic_cache(default_embedder(), [0.8, 0.9, 0.95], progress=False)
    f = r.frame.sort("min_cosine")
    assert (f["n"] == 600).all()
    assert (f["hits"] == f["correct_hits"] + f["false_hits"]).all()
    hits = f["hits"].to_list()
    assert hits[0] >= hits[1] >= hits[2] > 0
    assert r.pair_auc > 0.5 and r.conflicts == 0
    # near repeats of a stored question are the easy case: at 0.9 they hit and are right
    near = r.by_category(0.9).filter(pl.col("category") == "near_repeat")
    assert near["hits"][0] >= 50 and near["false_hits"][0] == 0
