"""The shipped labelled prompts: well formed, and the default router agrees with them.

Bars are set under the figures measured when the set was written: 0.970 on the 202 "tune" prompts (in
sample: the weights were set with them in view, so it says "the rules do what the rubric says") and 0.900
on the 30 "holdout" prompts written afterwards and scored once (out of sample, and small).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from workbench.router import Router, Target, confusion, evaluate, load_prompts, tier_share_chart

ACCURACY_BAR = 0.93
HOLDOUT_BAR = 0.85
TIERS = {"small": Target("http://127.0.0.1:9", "s"), "large": Target("http://127.0.0.1:9", "l")}


def test_shipped_set_is_well_formed() -> None:
    prompts = load_prompts()
    assert 150 <= len(prompts) <= 250
    assert {p.split for p in prompts} == {"tune", "holdout"}
    assert sum(p.split == "holdout" for p in prompts) >= 30
    assert len({p.id for p in prompts}) == len(prompts)
    assert {p.tier for p in prompts} == {"small", "large"}
    cats = {p.category for p in prompts}
    assert {"chitchat", "factual", "code", "math", "reasoning", "multiturn", "sensitive"} <= cats
    assert any(len(p.messages) > 3 for p in prompts)
    assert all(p.text for p in prompts)


def test_accuracy_on_the_shipped_set() -> None:
    everything = evaluate(Router(TIERS))
    frame = everything.filter(pl.col("split") == "tune")
    acc = frame["correct"].mean()
    assert isinstance(acc, float) and acc >= ACCURACY_BAR, confusion(frame)
    held = everything.filter(pl.col("split") == "holdout")["correct"].mean()
    assert isinstance(held, float) and held >= HOLDOUT_BAR, held
    # no category is left behind by a good overall figure
    per_cat = frame.group_by("category").agg(pl.col("correct").mean().alias("acc"))
    assert per_cat["acc"].min() >= 0.8, per_cat  # type: ignore[operator]
    cm = confusion(frame)
    assert cm["small"].sum() + cm["large"].sum() == frame.height


def test_sensitive_prompts_take_the_fast_path_and_stay_local() -> None:
    frame = evaluate(Router(TIERS)).filter(pl.col("forced"))
    assert frame.height >= 10
    assert frame["route_fast_path"].all() and (frame["tier"] == "small").all()
    assert frame["score"].is_null().all()
    # With the fast path off they are classified (score kept) and still stay local.
    slow = evaluate(Router(TIERS), fast_path=False).filter(pl.col("forced"))
    assert not slow["route_fast_path"].any() and (slow["tier"] == "small").all()
    assert slow["score"].is_not_null().all() and (slow["score"] >= 1.0).any()
    # Unforced prompts never take it.
    rest = evaluate(Router(TIERS)).filter(~pl.col("forced"))
    assert not rest["route_fast_path"].any()


def test_a_router_that_ignores_the_prompt_fails_the_bar() -> None:
    """The accuracy test can fail: a router whose policy sends everything to one tier is far below it."""
    from workbench.router import Policy

    frame = evaluate(Router(TIERS, policy=Policy(force_tier="small")))
    assert frame["correct"].mean() < ACCURACY_BAR  # type: ignore[operator]


def test_load_prompts_from_a_file_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text(
        '{"id": "a", "category": "x", "tier": "small", "prompt": "hi"}\n\n'
        '{"id": "b", "category": "x", "tier": "large", "messages": [{"role": "user", "content": "Prove it"}]}\n'
    )
    assert [p.id for p in load_prompts(good)] == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "tier": "small"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1.*needs id, category"):
        load_prompts(bad)


def test_tier_share_chart() -> None:
    frame = evaluate(Router(TIERS))
    spec = tier_share_chart(frame, by="category").to_dict()
    rows = next(iter(spec["datasets"].values()))
    shares: dict[str, float] = {}
    for r in rows:
        shares[r["group"]] = shares.get(r["group"], 0.0) + r["share"]
    assert set(shares) == set(frame["category"].unique()) and all(abs(v - 1) < 1e-9 for v in shares.values())
    sens = [r for r in rows if r["group"] == "sensitive"]
    n_sens = frame.filter(pl.col("category") == "sensitive").height
    assert sens == [{"group": "sensitive", "tier": "small", "n": n_sens, "fast_path_n": n_sens, "share": 1.0}]
    assert spec["title"]["text"] == "Requests per tier"
    one = tier_share_chart(frame).to_dict()
    assert {r["group"] for r in next(iter(one["datasets"].values()))} == {"all"}
    empty = tier_share_chart(frame.clear()).to_dict()
    assert "no data" in str(empty)
    with pytest.raises(ValueError, match="needs columns"):
        tier_share_chart(frame.drop("tier"))
