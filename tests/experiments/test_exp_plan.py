from __future__ import annotations

from collections import Counter

from workbench.experiments import plan


def test_interleaved_plan_runs_every_variant_on_each_prompt_before_moving_on() -> None:
    slots = plan(10, ["a", "b", "c"], repeats=2, interleave=True, seed=1)
    assert len(slots) == 60
    for k in range(0, 60, 3):
        triple = slots[k : k + 3]
        assert {s.variant for s in triple} == {"a", "b", "c"}
        assert len({(s.repeat, s.index) for s in triple}) == 1
    # the order within a block is randomised, so no variant is always first
    firsts = Counter(slots[k].variant for k in range(0, 60, 3))
    assert len(firsts) == 3


def test_plan_is_deterministic_per_seed() -> None:
    assert plan(20, ["a", "b"], seed=5) == plan(20, ["a", "b"], seed=5)
    assert plan(20, ["a", "b"], seed=5) != plan(20, ["a", "b"], seed=6)


def test_randomized_blocks() -> None:
    slots = plan(8, ["a", "b"], block=4, seed=0)
    chunks = [slots[i : i + 4] for i in range(0, 16, 4)]
    for ch in chunks:
        assert len({s.variant for s in ch}) == 1
    assert [s.index for s in chunks[0]] == [s.index for s in chunks[1]] == [0, 1, 2, 3]


def test_not_interleaved_runs_variants_in_sequence() -> None:
    slots = plan(3, ["a", "b"], repeats=1, interleave=False)
    assert [(s.variant, s.index) for s in slots] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]


def test_warmup_slots_come_first_and_are_marked() -> None:
    slots = plan(4, ["a", "b"], warmup=2, seed=0)
    assert [s.warmup for s in slots[:4]] == [True] * 4
    assert not any(s.warmup for s in slots[4:])
    assert Counter(s.variant for s in slots[:4]) == {"a": 2, "b": 2}
