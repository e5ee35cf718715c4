from __future__ import annotations

import polars as pl
import pytest

from workbench._exceptions import ConfigError
from workbench.experiments import Workload, available_prompt_sets
from workbench.experiments.workloads import PROMPTS_DIR


def test_shipped_prompt_set_is_well_formed() -> None:
    assert "mixed" in available_prompt_sets()
    frame = pl.read_ndjson(PROMPTS_DIR / "mixed.jsonl")
    assert set(frame.columns) >= {"id", "group", "text", "relation", "expected_cache"}
    assert 60 <= frame.height <= 120
    assert frame.get_column("id").is_unique().all()
    pairs = set(zip(frame["relation"], frame["expected_cache"], strict=True))
    assert pairs == {("unique", "miss"), ("repeat", "exact"), ("paraphrase", "semantic")}
    lengths = frame.get_column("text").str.len_chars()
    assert lengths.min() < 20 and lengths.max() > 300  # varied lengths
    originals: dict[str, str] = {}
    for row in frame.iter_rows(named=True):
        if row["relation"] == "unique":
            originals.setdefault(row["group"], row["text"])
            continue
        # every repeat/paraphrase comes after its group's original, so a cache can honestly hit
        assert row["group"] in originals, row
        if row["relation"] == "repeat":
            assert row["text"] == originals[row["group"]]
        else:
            assert row["text"] != originals[row["group"]]
    assert (frame["relation"] == "repeat").sum() >= 10 and (frame["relation"] == "paraphrase").sum() >= 10


def test_requests_carry_tags_and_fresh_ids() -> None:
    wl = Workload.prompts("mixed", limit=5, model="sim-large", max_tokens=16)
    item = wl.items[0]
    r1, r2 = wl.request(item, variant="v"), wl.request(item, variant="v")
    assert r1.id != r2.id
    assert r1.model == "sim-large" and r1.max_tokens == 16 and r1.temperature == 0.0
    assert r1.tags["prompt_id"] == item.id and r1.tags["variant"] == "v"
    assert r1.tags["expected_cache"] == item.expected_cache and r1.tags["group"] == item.group
    assert r1.last_user_text == item.text


def test_synthetic_is_seeded_and_has_requested_lengths() -> None:
    a = Workload.synthetic(200, input_tokens=50, output_tokens=20, spread=0.2, seed=1)
    b = Workload.synthetic(200, input_tokens=50, output_tokens=20, spread=0.2, seed=1)
    c = Workload.synthetic(200, input_tokens=50, output_tokens=20, spread=0.2, seed=2)
    assert a.items == b.items and a.items != c.items
    ins = [len(it.text.split()) - 1 for it in a.items]
    outs = [it.max_tokens or 0 for it in a.items]
    assert sum(ins) / len(ins) == pytest.approx(50, rel=0.05)
    assert sum(outs) / len(outs) == pytest.approx(20, rel=0.05)
    assert len(set(it.text for it in a.items)) == 200
    fixed = Workload.synthetic(3, input_tokens=7, output_tokens=4, model="m")
    assert [it.max_tokens for it in fixed.items] == [4, 4, 4]
    assert wl_req_max(fixed) == 4


def wl_req_max(wl: Workload) -> int | None:
    return wl.request(wl.items[0]).max_tokens


def test_user_lists_and_frames() -> None:
    wl = Workload.from_list(["one", "two"])
    assert [i.id for i in wl] == ["p001", "p002"] and wl.items[0].relation == "unique"
    df = pl.DataFrame({"prompt": ["x", "x"], "group": ["g", "g"], "relation": ["unique", "repeat"]})
    wl2 = Workload.from_frame(df, endpoint="completion", model="m")
    assert wl2.items[1].expected_cache == "exact"
    assert wl2.request(wl2.items[0]).prompt == "x"
    with pytest.raises(ConfigError):
        Workload.from_frame(pl.DataFrame({"q": ["x"]}))
    with pytest.raises(ConfigError):
        Workload.from_list([])
    with pytest.raises(ConfigError):
        Workload.prompts("no-such-set")


def test_warmup_request_does_not_reuse_workload_prompts() -> None:
    wl = Workload.prompts("mixed", model="m")
    texts = {i.text for i in wl}
    assert wl.warmup_request(0).last_user_text not in texts


def test_a_workload_without_a_model_names_none_until_the_run_asks_the_server() -> None:
    wl = Workload.prompts("mixed", limit=2)
    assert wl.model is None and wl.describe()["model"] is None  # never a simulator name by default
    with pytest.raises(ConfigError, match="names no model"):
        wl.request(wl.items[0])


def test_balanced_subset_keeps_whole_groups() -> None:
    full = Workload.prompts("mixed")
    sub = full.balanced(40)
    assert 40 <= len(sub) <= 50
    groups = {it.group for it in sub}
    for g in groups:  # every member of a kept group is kept, in file order
        assert [i.id for i in sub if i.group == g] == [i.id for i in full if i.group == g]
    relations = {it.relation for it in sub}
    assert relations == {"unique", "repeat", "paraphrase"}
