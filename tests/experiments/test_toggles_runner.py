"""The runner-side toggles act in `compare` (and so in `workbench bench`): prewarm, concurrency, disk_cache
with a cache_dir, the router's fast path; streaming figures never pool cache hits; an ablation says when a
toggle had nothing to act on. Each test judges against a reference measured in the same test."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from workbench import Backend, Optimizations
from workbench.experiments import Workload, compare
from workbench.experiments.bench_report import before_after, markdown_report
from workbench.experiments.results import RunResult
from workbench.router import Router, Target, load_prompts
from workbench.simulator import Profile, Simulator

# Deterministic pacing, no prompt-length term: differences come from the toggles alone.
STEADY = {"ttft_ms": 30.0, "ttft_per_prompt_token_ms": 0.0, "token_delay_ms": 2.0, "jitter": 0.0}


def _ttfts_in_send_order(run: RunResult) -> list[float]:
    f = run.measured.sort("sent_ns")
    return [float(x) for x in f.get_column("ttft_ms").to_list()]


# ---- prewarm ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_prewarm_takes_the_cold_start_out_of_the_first_timed_request(protocol: str) -> None:
    """A cold model: the first timed request pays the 800 ms load without prewarm and not with it."""
    prof = Profile(**STEADY, cold_start=True, load_ms=800.0)
    wl = Workload.from_list([f"Say {w}." for w in ("one", "two", "three", "four", "five")], max_tokens=4)
    wl = wl.with_options(model="sim-small")
    excess = {}
    for on in (False, True):
        with Simulator(prof) as sim:  # a fresh server each: both arms start with the model cold
            be = Backend(sim.url, protocol=protocol)  # type: ignore[arg-type]
            opts = Optimizations(connection_pool=True, prewarm=on)  # pooled: less per-request noise
            run = compare(wl, {"v": opts}, backend=be, progress=False)
        t = _ttfts_in_send_order(run)
        assert len(t) == 5 and (run.measured["status"] == "ok").all()
        excess[on] = t[0] - statistics.median(t[1:])  # the first request against the rest of its own run
        facts = run.meta["exercised"]
        if on:
            (warm,) = run.meta["prewarm"]["v"]
            assert warm["status"] == "ok" and warm["protocol"] == protocol
            assert warm["ttft_ms"] - statistics.median(t) > 600  # the warm-up, not a timed request, loaded it
            assert facts["prewarm"]["exercised"] is True, facts["prewarm"]
            assert run.frame.height == 5  # the warm-up is not a row
        else:
            assert run.meta["prewarm"] == {} and "prewarm" not in facts
    assert excess[False] > 600, excess
    assert excess[True] < excess[False] / 4, excess


def test_prewarm_without_a_cold_model_is_reported_not_exercised() -> None:
    with Simulator(Profile(**STEADY)) as sim:
        wl = Workload.from_list(["a b c", "d e f", "g h i"], max_tokens=4, model="sim-small")
        run = compare(
            wl,
            {"baseline": Optimizations(), "+prewarm": Optimizations(prewarm=True)},
            backend=Backend(sim.url, protocol="openai"),
            progress=False,
        )
    fact = run.meta["exercised"]["prewarm"]
    assert fact["exercised"] is False and "no cold model" in fact["evidence"]
    cmp = run.comparisons(metrics=["ttft_ms"], stats=["median"])
    row = cmp.filter(pl.col("variant") == "+prewarm").row(0, named=True)
    assert row["verdict"].startswith("not exercised by this workload") and row["factor"] != row["factor"]


# ---- concurrency -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steady_sim() -> Iterator[Simulator]:
    with Simulator(Profile(**STEADY)) as sim:
        yield sim


def _ordered_workload(n: int) -> Workload:
    # Earlier prompts ask for longer answers: inside a batch they finish last, so completion order differs
    # from submission order and only the runner's ordering keeps the rows in submission order.
    rows = [
        {"id": f"p{i:02d}", "text": f"Prompt number {i}.", "max_tokens": 4 + 2 * (n - i)} for i in range(n)
    ]
    return Workload.from_records(rows, model="sim-small")


def test_concurrency_runs_a_batch_through_a_worker_pool_in_submission_order(steady_sim: Simulator) -> None:
    be = Backend(steady_sim.url, protocol="openai")
    wl = _ordered_workload(16)
    # both arms pooled: without it each request builds its own HTTP client (~20 ms of blocking TLS-context
    # setup here), which serialises the workers and measures that instead of the worker pool
    seq = compare(wl, {"v": Optimizations(connection_pool=True)}, backend=be, progress=False)
    pool = compare(wl, {"v": Optimizations(connection_pool=True, concurrency=8)}, backend=be, progress=False)
    ids = [it.id for it in wl]
    for run in (seq, pool):
        assert run.measured.get_column("prompt_id").to_list() == ids
        assert (run.measured["status"] == "ok").all()
    assert seq.meta["max_in_flight"]["v"] == 1 and pool.meta["max_in_flight"]["v"] == 8
    # the same 16 requests in two batches of 8 take about 2 request-times instead of 16
    assert pool.meta["wall_s"] < seq.meta["wall_s"] / 3, (pool.meta["wall_s"], seq.meta["wall_s"])
    ends = pool.measured.get_column("end_ns").to_list()
    assert ends != sorted(ends)  # they completed out of order, and the rows are still in submission order
    assert pool.meta["exercised"]["concurrency"]["exercised"] is True


def test_concurrency_not_interleaved_is_a_closed_loop_with_client_queue_time(steady_sim: Simulator) -> None:
    be = Backend(steady_sim.url, protocol="openai")
    wl = Workload.from_list([f"Item {i}." for i in range(12)], max_tokens=6, model="sim-small")
    opts = Optimizations(connection_pool=True, concurrency=4)
    run = compare(wl, {"v": opts}, backend=be, interleave=False, progress=False)
    f = run.measured
    assert run.meta["max_in_flight"]["v"] == 4
    queue = f.get_column("client_queue_ms").to_list()
    e2e = statistics.median(f.get_column("e2e_ms").to_list())
    # 12 requests through 4 workers: the first 4 start at once (bar the client's first-use setup), the last
    # 4 wait for two rounds of requests before a worker is free
    assert max(queue[:4]) < min(queue[8:]) and min(queue[8:]) > e2e, (queue, e2e)
    # the wait is before the send: TTFT from the schedule includes it, TTFT does not
    late = f.slice(8)
    assert (late["ttft_from_schedule_ms"] - late["ttft_ms"] > e2e).all()


def test_concurrency_under_another_arrival_says_the_arrival_sets_the_load(steady_sim: Simulator) -> None:
    be = Backend(steady_sim.url, protocol="openai")
    wl = Workload.from_list(["x y", "y z", "z w"], max_tokens=4, model="sim-small")
    run = compare(
        wl, {"v": Optimizations(concurrency=4)}, backend=be, arrival="concurrency=2", progress=False
    )
    fact = run.meta["exercised"]["concurrency"]
    assert fact["exercised"] is False and "concurrency=2" in fact["evidence"]


# ---- disk_cache across a restart ------------------------------------------------------------------------

_FILL = """
import json, sys
from workbench import Backend, Optimizations
from workbench.experiments import Workload, compare
url, folder = sys.argv[1], sys.argv[2]
wl = Workload.from_list(["Name a colour.", "Name a fruit.", "Name a tree."], max_tokens=8, model="sim-small")
run = compare(wl, {"disk": Optimizations(disk_cache=True)}, backend=Backend(url, protocol="openai"),
              cache_dir=folder, progress=False)
print(json.dumps({"cache": run.frame["cache"].to_list(), "ttft": run.frame["ttft_ms"].to_list(),
                  "meta": run.meta["disk_cache"], "facts": run.meta["exercised"]}))
"""


def test_disk_cache_in_a_named_folder_answers_a_new_process(tmp_path: Path) -> None:
    folder, out = tmp_path / "disk", tmp_path / "bench"
    with Simulator(Profile(**{**STEADY, "ttft_ms": 120.0})) as sim:
        fill = subprocess.run(
            [sys.executable, "-c", _FILL, sim.url, str(folder)], capture_output=True, text=True, timeout=120
        )
        assert fill.returncode == 0, fill.stderr
        first = json.loads(fill.stdout.strip().splitlines()[-1])
        # a second process: the CLI, same variant name, same folder
        cli = [
            sys.executable, "-m", "workbench.cli", "bench", "--url", sim.url, "--protocol", "openai",
            "--model", "sim-small", "--prompts-file", str(_prompts_file(tmp_path)), "--max-tokens", "8",
            "--variants", "disk:disk_cache", "--warmup", "0", "--no-charts", "--no-progress",
            "--cache-dir", str(folder), "--out", str(out),
        ]  # fmt: skip
        done = subprocess.run(cli, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr + done.stdout
    assert first["cache"] == ["miss"] * 3
    assert first["meta"]["disk"] == {"dir": str(folder / "disk"), "persistent": True}
    assert first["facts"]["disk_cache"]["exercised"] is False
    second = RunResult.load(out)
    assert second.frame.get_column("cache").to_list() == ["exact"] * 3
    hit_ttft = max(second.frame.get_column("ttft_ms").to_list())
    assert hit_ttft < min(first["ttft"]) / 10, (hit_ttft, first["ttft"])
    assert second.meta["exercised"]["disk_cache"]["exercised"] is True
    assert "Toggles exercised by this workload" in (out / "report.md").read_text()


def _prompts_file(tmp_path: Path) -> Path:
    p = tmp_path / "prompts.jsonl"
    p.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("Name a colour.", "Name a fruit.", "Name a tree."))
    )
    return p


def test_disk_cache_default_is_a_temporary_folder_and_says_so(steady_sim: Simulator) -> None:
    wl = Workload.from_list(["Name a bird."], max_tokens=4, model="sim-small")
    run = compare(
        wl,
        {"d": Optimizations(disk_cache=True)},
        backend=Backend(steady_sim.url, protocol="openai"),
        progress=False,
    )
    info = run.meta["disk_cache"]["d"]
    assert info["persistent"] is False and "workbench-disk-" in info["dir"]
    assert not Path(info["dir"]).exists()  # removed with the variant's client


# ---- router ----------------------------------------------------------------------------------------------


def test_router_fast_path_skips_classification_and_routes_by_tier() -> None:
    """Two tiers on two servers. Policy-forced prompts skip classification with the fast path on (cheaper,
    in the same run), and every request lands on its tier's model and server as the labels say."""
    prompts = load_prompts()
    forced = [p for p in prompts if p.forced][:6]
    plain = [p for p in prompts if not p.forced and p.split == "tune"]
    plain = [p for p in plain if p.tier == "small"][:4] + [p for p in plain if p.tier == "large"][:4]
    chosen = forced + plain
    assert len(forced) >= 3 and len(plain) == 8
    rows = [{"id": p.id, "text": p.text, "max_tokens": 2} for p in chosen]
    wl = Workload.from_records(rows, model="sim-small")
    with Simulator(Profile.instant(ttft_ms=2.0)) as small, Simulator(Profile.instant(ttft_ms=2.0)) as large:
        router = Router(
            {
                "small": Target(small.url, "sim-small", "openai"),
                "large": Target(large.url, "sim-large", "openai"),
            }
        )
        run = compare(
            wl,
            {"slow": Optimizations(), "fast": Optimizations(router_fast_path=True)},
            backend=Backend(small.url, protocol="openai"),
            router=router,
            repeats=3,
            progress=False,
        )
        large_url = large.url
    f = run.measured
    assert (f["status"] == "ok").all()
    labels = {p.id: p.tier for p in chosen}
    forced_ids = [p.id for p in forced]
    on_forced = f.filter(pl.col("prompt_id").is_in(forced_ids))
    by = {v: on_forced.filter(pl.col("variant") == v) for v in ("slow", "fast")}
    assert by["fast"]["route_fast_path"].all() and not by["slow"]["route_fast_path"].any()
    # judged within the run: the same prompts, routed with and without classification
    fast_us, slow_us = by["fast"]["routing_us"].median(), by["slow"]["routing_us"].median()
    assert fast_us < slow_us, (fast_us, slow_us)  # type: ignore[operator]
    # the policy's tier wins either way; plain prompts get the classifier's tier, as labelled
    assert all(labels[p] == t for p, t in f.select("prompt_id", "tier").iter_rows())
    shares = f.group_by("variant", "tier").len()
    want = sum(1 for p in chosen if p.tier == "large") * 3
    for v in ("slow", "fast"):
        assert shares.filter((pl.col("variant") == v) & (pl.col("tier") == "large"))["len"].item() == want
    assert set(f.filter(pl.col("tier") == "large")["model"].to_list()) == {"sim-large"}
    assert all(large_url in str(b) or "sim" in str(b) for b in f.filter(pl.col("tier") == "large")["backend"])
    assert run.meta["exercised"]["router_fast_path"]["exercised"] is True


def test_router_fast_path_without_a_router_is_not_exercised(steady_sim: Simulator) -> None:
    wl = Workload.from_list(["a", "b"], max_tokens=2, model="sim-small")
    run = compare(
        wl,
        {"baseline": Optimizations(), "+router_fast_path": Optimizations(router_fast_path=True)},
        backend=Backend(steady_sim.url, protocol="openai"),
        progress=False,
    )
    assert "tier" not in run.frame.columns
    fact = run.meta["exercised"]["router_fast_path"]
    assert fact["exercised"] is False and "no router" in fact["evidence"]
    row = run.comparisons(metrics=["ttft_ms"], stats=["median"]).row(0, named=True)
    assert row["verdict"].startswith("not exercised by this workload: router_fast_path: no router")


# ---- streaming figures vs cache hits ---------------------------------------------------------------------


def test_streaming_figures_never_pool_cache_hits(steady_sim: Simulator) -> None:
    wl = Workload.from_list([f"Cached prompt {i}." for i in range(4)], max_tokens=12, model="sim-small")
    run = compare(
        wl,
        {"baseline": Optimizations(), "cache": Optimizations(exact_cache=True)},
        backend=Backend(steady_sim.url, protocol="openai"),
        repeats=3,
        progress=False,
    )
    f = run.measured.filter(pl.col("variant") == "cache")
    live = f.filter(pl.col("cache") == "miss")["tokens_per_s"]
    hits = f.filter(pl.col("cache") == "exact")["tokens_per_s"]
    assert live.len() == 4 and hits.len() == 8
    assert hits.median() > 3 * live.median()  # type: ignore[operator]  # replays are much faster: pooling would show
    cmp = run.comparisons(metrics=["tokens_per_s", "ttft_ms"], stats=["median"])
    tps = cmp.filter(pl.col("metric") == "tokens_per_s").row(0, named=True)
    assert tps["n_variant"] == 4 and "8 cache hits reported apart" in tps["verdict"]
    ttft = cmp.filter(pl.col("metric") == "ttft_ms").row(0, named=True)
    assert "pools 8 cache hits with 16 live streams" in ttft["verdict"]
    summary = run.summary(metrics=["tokens_per_s"])
    rows = {(r["variant"], r["metric"]): r for r in summary.iter_rows(named=True)}
    assert rows[("cache", "tokens_per_s")]["count"] == 4
    assert rows[("cache", "tokens_per_s (cache hits)")]["count"] == 8
    assert rows[("cache", "tokens_per_s")]["p50"] == pytest.approx(live.median())
    table = {r["metric"]: r for r in before_after(run, "baseline", "cache").iter_rows(named=True)}
    assert table["Streaming tok/s (p50, live streams)"]["after_value"] == pytest.approx(live.median())
    assert table["Cache-hit replay tok/s (p50, not streams)"]["after_value"] == pytest.approx(hits.median())
    assert "pools" in table["TTFT p50"]["verdict"]
    assert "Streaming tok/s (p50, live streams)" in markdown_report(run)


# ---- the ablation, honest --------------------------------------------------------------------------------


def test_ablation_reports_toggles_with_nothing_to_act_on(steady_sim: Simulator) -> None:
    """Unique prompts, no stops, no router, no view: caches, early cancel, the router and the UI toggles
    cannot act. With repeats the exact cache can, and then it gets a ratio."""
    from workbench.experiments import ablation

    be = Backend(steady_sim.url, protocol="openai")
    wl = Workload.from_list([f"Unique {i}." for i in range(3)], max_tokens=4, model="sim-small")
    run = ablation(wl, backend=be, progress=False)
    facts = run.meta["exercised"]
    idle = {k for k, v in facts.items() if not v["exercised"]}
    assert {"exact_cache", "semantic_cache", "disk_cache", "early_cancel", "router_fast_path"} <= idle
    assert {"coalesce_ui", "incremental_render"} <= idle
    assert {"connection_pool", "fast_parse"} <= set(facts) - idle
    cmp = run.comparisons(metrics=["ttft_ms"], stats=["median"])
    verdict = dict(cmp.select("variant", "verdict").iter_rows())
    for name in ("early_cancel", "exact_cache", "router_fast_path", "coalesce_ui"):
        assert verdict[f"+{name}"].startswith("not exercised by this workload"), verdict[f"+{name}"]
        assert verdict[f"-{name}"].startswith("not exercised by this workload"), verdict[f"-{name}"]
    assert not verdict["+fast_parse"].startswith("not exercised")
    assert not verdict["all-on"].startswith("not exercised")
    assert "not exercised by this workload" in markdown_report(run)

    repeated = compare(
        wl,
        {"baseline": Optimizations(), "+exact_cache": Optimizations(exact_cache=True)},
        backend=be,
        repeats=2,
        progress=False,
    )
    assert repeated.meta["exercised"]["exact_cache"] == {
        "exercised": True, "evidence": "3 exact hits", "variants": ["+exact_cache"],
    }  # fmt: skip
    row = repeated.comparisons(metrics=["ttft_ms"], stats=["median"]).row(0, named=True)
    assert not row["verdict"].startswith("not exercised") and row["factor"] > 1
