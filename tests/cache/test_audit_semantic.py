"""False-hit audit: a hand-made pair set with hand-computed answers, Wilson intervals, configurations (embedder x
verifier x threshold), the operating point, a user's own frame, served hits, hold-out, and the fow-cache pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest
from _system import require_module

from workbench._exceptions import ConfigError
from workbench.cache.audit import (
    AuditResult,
    audit_semantic_cache,
    holdout_report,
    label_pairs,
    load_fow_pairs,
    served_pairs,
    split_pairs,
    wilson_interval,
)
from workbench.cache.embedders import default_embedder
from workbench.cache.semantic import DEFAULT_MIN_COSINE, SemanticTier
from workbench.cache.verify import TrapGuard, Verdict, VerifierBase


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


# ---- configurations, the user's own frame, served hits, hold-out -----------------------------------------


class RejectText(VerifierBase):
    """Rejects candidates whose stored text is listed (a stand-in verifier with a known effect)."""

    def __init__(self, *texts: str) -> None:
        super().__init__()
        self.texts = set(texts)

    @property
    def name(self) -> str:
        return "reject-listed"

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        return Verdict(candidate not in self.texts, "listed")


def test_each_verifier_is_a_configuration_with_its_own_rows() -> None:
    r = audit_semantic_cache(
        EMB, [0.8, 0.9], PAIRS, verifiers=[None, RejectText("open sundays", "reset password")], progress=False
    )
    assert r.configs == [("table", "none"), ("table", "reject-listed")]
    f = r.frame.filter(pl.col("verifier") == "reject-listed").sort("min_cosine")
    # 0.8: b0 -> a0 rejected (its own answer: lost), b1 -> a1 rejected (the trap: saved), b3 -> a0 rejected
    assert f["hits"].to_list() == [0, 0] and f["false_hits"].to_list() == [0, 0]
    assert f["rejected"].to_list() == [3, 2]
    assert (f["verify_us"] > 0).all() and (f["lookup_us"] > 0).all()
    with pytest.raises(ConfigError, match="several"):
        r.threshold_for()
    assert r.threshold_for(0.6, verifier="none") == 0.9
    assert set(r.costs["name"]) == {"reject-listed", "table"}


def test_operating_point_takes_the_best_recall_within_the_budget() -> None:
    r = audit_semantic_cache(EMB, [0.8, 0.9, 0.94], PAIRS, verifiers=[None, RejectText("open sundays")],
                             progress=False)
    # Within 5 % (point estimates): "none" at 0.94 (b0 -> a0 only) and the verifier at 0.9 (b0 -> a0; the
    # trap b1 -> a1 rejected) both have recall 0.5 and hit rate 0.25: the tie goes to the cheaper one.
    point = r.operating_point(0.05, conservative=False)
    assert point is not None and (point["verifier"], point["min_cosine"]) == ("none", 0.94)
    assert point["recall"] == 0.5 and point["false_hits"] == 0
    guarded = r.operating_point(0.05, conservative=False, verifiers=["reject-listed"])
    assert guarded is not None and guarded["min_cosine"] == 0.9 and guarded["false_hits"] == 0
    assert r.operating_point(0.05) is None  # one hit never bounds the Wilson interval under 5 %
    best = r.best_per_config(0.05, conservative=False)
    assert best["meets_budget"].to_list() == [True, True]


def test_audit_on_a_users_own_frame() -> None:
    # Any frame with a, b, same_answer: here a few questions of a made-up support desk, labelled by hand.
    frame = pl.DataFrame(
        {
            "a": [
                "How do I reset my password?",
                "What time does the Leeds office open?",
                "Is parking free for visitors?",
                "How do I export my invoices?",
                "Can I pay by card?",
                "Is the gym open on Sunday?",
            ],
            "b": [
                "how do i reset my password",
                "What time does the Leeds office close?",
                "Is parking free for staff?",
                "How do I export my invoices as PDF?",
                "Can I pay by card please?",
                "Is the gym open on Saturday?",
            ],
            "same_answer": [1, 0, 0, 0, 1, 0],  # ints are fine: cast to bool
            "note": ["repeat", "antonym", "person", "scope", "filler", "day"],  # extra columns are ignored
        }
    )
    r = audit_semantic_cache(thresholds=[0.8, 0.9], pairs=frame, verifiers=[None, TrapGuard()], progress=False)
    f = r.frame.sort("verifier", "min_cosine")
    assert (f["n"] == 6).all() and (f["answerable"] == 2).all()
    unguarded = f.filter(pl.col("verifier") == "none")
    guarded = f.filter(pl.col("verifier") == "trap-guard")
    assert unguarded["false_hits"].max() >= 2  # one-word edits sit above 0.9 for a bag-of-words embedder
    assert guarded["false_hits"].to_list() == [0, 0]
    assert guarded["correct_hits"].to_list() == [2, 2] and guarded["recall"].to_list() == [1.0, 1.0]
    assert set(r.queries["category"]) == {"all"}
    with pytest.raises(ConfigError, match="labels"):
        audit_semantic_cache(EMB, [0.9], PAIRS.with_columns(pl.lit(None, pl.Boolean).alias("same_answer")))


def test_served_hits_become_pairs_to_label_and_audit() -> None:
    tier = SemanticTier(verifier=None, min_cosine=0.8)
    tier.add_many("p", ["Is the pool open today?", "How do I book a lane?"], ["k1", "k2"])
    for q in ["is the pool open today", "Is the pool closed today?", "How do I book a lane?"]:
        assert tier.lookup("p", q) is not None
    pairs = served_pairs(tier)
    assert pairs.columns == ["a", "b", "similarity"] and len(pairs) == 3
    labelled = label_pairs(pairs, TrapGuard())  # any verifier can label; an LLMJudge is the usual one
    assert labelled.filter(pl.col("b") == "Is the pool closed today?")["same_answer"].to_list() == [False]
    assert labelled["same_answer"].sum() == 2 and "label_reason" in labelled.columns
    r = audit_semantic_cache(thresholds=[0.8], pairs=labelled, progress=False)
    assert r.frame["hits"][0] == 3 and r.frame["false_hits"][0] == 1
    assert len(served_pairs(tier, n=2, seed=1)) == 2
    frame = tier.served().rename({"query": "q"})
    with pytest.raises(ConfigError):
        served_pairs(frame)


def test_split_pairs_is_stratified_disjoint_and_fixed() -> None:
    frame = pl.DataFrame(
        {"a": [f"a{i}" for i in range(20)], "b": [f"b{i}" for i in range(20)],
         "same_answer": [i % 2 == 0 for i in range(20)], "category": ["x"] * 10 + ["y"] * 10}
    )
    tune, test = split_pairs(frame)
    assert len(tune) == len(test) == 10
    assert set(tune["a"]) | set(test["a"]) == set(frame["a"]) and not set(tune["a"]) & set(test["a"])
    assert tune.group_by("category").len().sort("category")["len"].to_list() == [5, 5]
    again, _ = split_pairs(frame)
    assert again["a"].to_list() == tune["a"].to_list()
    other, _ = split_pairs(frame, seed=1)
    assert other["a"].to_list() != tune["a"].to_list()


def test_holdout_report_scores_the_choice_on_the_other_half() -> None:
    r = audit_semantic_cache(EMB, [0.8, 0.9, 0.94], PAIRS, verifiers=[RejectText("open sundays")], progress=False)
    rep = holdout_report(r, r, 0.05, conservative=False)
    assert rep["half"].to_list() == ["chosen on this half", "held out"]
    assert rep["min_cosine"].to_list() == [0.9, 0.9]
    with pytest.raises(ConfigError, match="budget"):
        holdout_report(r, r, 0.0, conservative=True)


def test_default_configuration_is_the_fow_cache_operating_point() -> None:
    """SemanticTier()'s defaults are what the audit picks on fow-cache for a 5 % budget (Wilson upper bound)
    among configurations that need no optional package; this fails when the guard or the embedder change
    and DEFAULT_MIN_COSINE is not re-chosen."""
    require_module("fow_cache", "the default audit pairs (pip install fow-cache)")
    default = SemanticTier()
    r = audit_semantic_cache(default.embedder, verifiers=[default.verifier], progress=False)
    point = r.operating_point(0.05)
    assert point is not None
    assert point["min_cosine"] == DEFAULT_MIN_COSINE == default.min_cosine
    assert point["false_hit_rate_hi"] <= 0.05 and point["recall"] > 0.25
    # without the verifier no audited threshold meets the budget with this embedder
    bare = audit_semantic_cache(default.embedder, progress=False)
    assert bare.operating_point(0.05) is None
