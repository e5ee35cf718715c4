"""Vector indices: brute force vs HNSW agreement, early exit, removal, growth, the automatic switch."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from workbench._exceptions import ConfigError
from workbench.cache.index import AnnIndex, AutoIndex, BruteForceIndex, VectorIndex, brute_force_truth

DIM = 64


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _near(rng: np.random.Generator, base: np.ndarray, cos: float) -> np.ndarray:
    """Unit vectors at exactly cosine `cos` from each row of `base`."""
    noise = _unit(rng, len(base), base.shape[1])
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = cos * base + np.sqrt(1 - cos * cos) * noise
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("cls", [BruteForceIndex, AnnIndex, AutoIndex])
def test_protocol_and_basic_search(cls: type) -> None:
    rng = np.random.default_rng(0)
    idx = cls(DIM)
    assert isinstance(idx, VectorIndex)
    ids, sims = idx.search(_unit(rng, 1)[0], 3)
    assert len(ids) == 0 and len(sims) == 0
    x = _unit(rng, 50)
    idx.add(np.arange(100, 150), x)
    assert len(idx) == 50
    ids, sims = idx.search(x[7], 3)
    assert ids[0] == 107 and sims[0] == pytest.approx(1.0, abs=1e-3)
    assert len(ids) == 3 and sims[0] >= sims[1] >= sims[2]
    with pytest.raises(ConfigError):
        idx.add([1], np.zeros((1, DIM + 1), np.float32))
    with pytest.raises(ConfigError):
        idx.search(np.zeros(DIM + 1, np.float32))


def test_brute_force_agrees_with_ann() -> None:
    rng = np.random.default_rng(1)
    x = _unit(rng, 3000)
    brute, ann = BruteForceIndex(DIM), AnnIndex(DIM)
    brute.add(np.arange(3000), x)
    ann.add(np.arange(3000), x)
    queries = _near(rng, x[rng.integers(0, 3000, 200)], 0.9)
    truth = brute_force_truth(x, queries)[:, 0]
    got_b = np.array([brute.search(q, 1)[0][0] for q in queries])
    got_a = np.array([ann.search(q, 1)[0][0] for q in queries])
    np.testing.assert_array_equal(got_b, truth)
    assert (got_a == truth).mean() >= 0.98
    # similarities agree: both are float32 dot products of the stored vectors
    sa = np.array([ann.search(q, 1)[1][0] for q in queries[:20]])
    sb = np.array([brute.search(q, 1)[1][0] for q in queries[:20]])
    np.testing.assert_allclose(sa, sb, atol=1e-6)


def test_brute_force_top_k_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 500)
    idx = BruteForceIndex(DIM)
    idx.add(np.arange(500), x)
    q = _unit(rng, 1)[0]
    ids, sims = idx.search(q, 10)
    expect = np.argsort(-(x @ q))[:10]
    np.testing.assert_array_equal(ids, expect)
    np.testing.assert_allclose(sims, (x @ q)[expect], rtol=1e-5)


def test_early_exit_stops_at_the_first_good_enough_block() -> None:
    rng = np.random.default_rng(3)
    x = _unit(rng, 1000)
    target = x[900].copy()
    # a near-duplicate (cos 0.99) of the query sits in block 0; the exact copy sits in block 3 (rows 768..)
    x[5] = _near(rng, target[None, :], 0.99)[0]
    exact = BruteForceIndex(DIM, block_rows=256)
    early = BruteForceIndex(DIM, early_exit_cosine=0.98, block_rows=256)
    high_bar = BruteForceIndex(DIM, early_exit_cosine=0.999, block_rows=256)
    for idx in (exact, early, high_bar):
        idx.add(np.arange(1000), x)
    assert exact.search(target, 1)[0][0] == 900
    ids, sims = early.search(target, 1)
    assert ids[0] == 5 and sims[0] == pytest.approx(0.99, abs=1e-4)
    assert high_bar.search(target, 1)[0][0] == 900  # 0.99 is below that bar: it scans on
    # with no match above the bar every block is scanned and the answer is exact
    q = _near(rng, x[700:701], 0.9)[0]
    assert early.search(q, 1)[0][0] == exact.search(q, 1)[0][0] == 700


def test_remove_growth_and_compaction() -> None:
    rng = np.random.default_rng(4)
    x = _unit(rng, 300)
    idx = BruteForceIndex(DIM, initial_capacity=4)
    for i in range(300):  # one at a time: the matrix doubles 4 -> 512
        idx.add(i, x[i])
    assert idx.capacity == 512 and len(idx) == 300
    assert idx.remove(10) and not idx.remove(10)
    assert 10 not in idx and len(idx) == 299
    ids, _ = idx.search(x[10], 300)
    assert 10 not in ids.tolist() and len(ids) == 299
    for i in range(0, 250):
        idx.remove(i)
    assert len(idx) == 50 and idx.capacity < 512  # tombstones compacted
    ids, sims = idx.search(x[260], 1)
    assert ids[0] == 260 and sims[0] == pytest.approx(1.0, abs=1e-5)
    # re-adding an id replaces its vector
    idx.add(260, x[0])
    assert idx.search(x[0], 1)[0][0] == 260 and len(idx) == 50


def test_removed_rows_never_match_even_with_negative_threshold_vectors() -> None:
    idx = BruteForceIndex(2)
    idx.add([1, 2], np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32))
    idx.remove(1)
    ids, sims = idx.search(np.array([1.0, 0.0], np.float32), 2)
    assert ids.tolist() == [2] and sims[0] == pytest.approx(-1.0)


def test_ann_remove_and_replace() -> None:
    rng = np.random.default_rng(5)
    x = _unit(rng, 200)
    idx = AnnIndex(DIM)
    idx.add(np.arange(200), x)
    assert idx.remove(42) and not idx.remove(42) and len(idx) == 199
    assert idx.search(x[42], 1)[0][0] != 42
    idx.add(7, x[42])
    assert idx.search(x[42], 1)[0][0] == 7 and len(idx) == 199


def test_auto_index_switches_to_ann_past_the_threshold() -> None:
    rng = np.random.default_rng(6)
    x = _unit(rng, 120)
    idx = AutoIndex(DIM, ann_threshold=100)
    idx.add(np.arange(99), x[:99])
    assert idx.kind == "brute"
    idx.add(np.arange(99, 120), x[99:])
    assert idx.wait_ready(timeout=30)
    assert idx.kind == "ann" and len(idx) == 120
    assert idx.search(x[3], 1)[0][0] == 3
    assert idx.remove(3) and len(idx) == 119
    never = AutoIndex(DIM, ann_threshold=None)
    never.add(np.arange(120), x)
    assert never.kind == "brute"


def test_auto_index_move_reconciles_changes_made_during_the_build() -> None:
    """The graph is built in the background: adds, replacements and removals made meanwhile reach it."""
    rng = np.random.default_rng(8)
    x = _unit(rng, 6000)
    idx = AutoIndex(DIM, ann_threshold=3000, ann_options={"expansion_add": 400})
    idx.add(np.arange(3000), x[:3000])  # starts the move
    assert idx.kind == "brute"
    for i in range(3000, 3400):  # while the graph is being built
        idx.add(i, x[i])
    for i in range(0, 200):
        idx.remove(i)
    idx.add(np.arange(200, 300), x[5000:5100])  # replaced vectors
    moved_late = not idx.wait_ready(timeout=0)
    assert idx.wait_ready(timeout=60) and idx.kind == "ann" and len(idx) == 3200
    expect = {i: x[i] for i in range(300, 3400)} | {200 + j: x[5000 + j] for j in range(100)}
    found = [idx.search(v, 1)[0][0] == i for i, v in expect.items()]
    assert np.mean(found) >= 0.99
    assert not any(i in idx._impl for i in range(200))  # type: ignore[operator]
    assert moved_late  # the changes above really overlapped the build


def test_concurrent_searches_during_adds_and_removes() -> None:
    rng = np.random.default_rng(7)
    x = _unit(rng, 4000)
    idx = BruteForceIndex(DIM, early_exit_cosine=0.99, block_rows=256)
    idx.add(np.arange(1000), x[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                i = int(rng.integers(0, 1000))
                ids, sims = idx.search(x[i], 1)
                # row i is never removed: it must always be found, exactly
                assert ids[0] == i and sims[0] > 0.999
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1000, 4000, 50):
        idx.add(np.arange(start, start + 50), x[start : start + 50])
        for j in range(start, start + 40):
            idx.remove(j)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[0]
    assert len(idx) == 1000 + 60 * 10


def test_single_thread_blas_gives_the_same_answers_and_restores_the_setting() -> None:
    from workbench.cache import index as index_mod

    rng = np.random.default_rng(8)
    x = _unit(rng, 20_000)
    q = _near(rng, x[:5], 0.9)
    one = BruteForceIndex(DIM, single_thread_blas=True)
    many = BruteForceIndex(DIM, single_thread_blas=False)
    one.add(np.arange(20_000), x)
    many.add(np.arange(20_000), x)
    for v in q:
        a, b = one.search(v, 3), many.search(v, 3)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    if index_mod._blas_local is not None:  # OpenBLAS: the thread-local count is put back after each search
        before = index_mod._blas_local(3)
        one.search(q[0], 1)
        assert index_mod._blas_local(before) == 3


@pytest.mark.parametrize("reduce_to", [None, 16])
def test_ann_churn_keeps_ids_and_vectors_paired(reduce_to: int | None) -> None:
    """Removals, re-adds of removed ids and replacements, in random order, with and without the projection,
    with background rebuilds running while the test keeps mutating and searching: every live id still finds
    its own vector at cosine 1, and removed ids never come back."""
    rng = np.random.default_rng(11)
    pool = _unit(rng, 400)
    idx = AnnIndex(DIM, initial_capacity=16, reduce_to=reduce_to, min_fit_rows=100, rebuild_after=20)
    idx.add(np.arange(1000, 1200), pool[200:])  # the first batch fits the projection (when asked)
    assert idx.projected_dim == (reduce_to or DIM)
    live: dict[int, int] = {1000 + r: 200 + r for r in range(200)}  # id -> row of pool
    for step in range(1500):
        i = int(rng.integers(0, 60))
        if rng.random() < 0.55:
            row = int(rng.integers(0, 200))
            if row in live.values():
                continue
            idx.add(i, pool[row])
            live[i] = row
        elif live:
            victim = int(rng.choice(list(live)))
            assert idx.remove(victim)
            del live[victim]
        if step % 50 == 0:
            assert len(idx) == len(live)
            for id_, row in live.items():
                ids, sims = idx.search(pool[row], 1)
                assert ids[0] == id_ and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert idx.join_rebuild(timeout=30) and idx.rebuilds >= 3
    for id_, row in live.items():
        assert idx.search(pool[row], 1)[0][0] == id_
    assert all(i in idx for i in live) and not any(i in idx for i in set(range(60)) - set(live))


def test_ann_projection_keeps_recall_and_exact_similarities() -> None:
    """Structured data (a 24-dim signal in 128 dims plus noise): the graph holds 32 principal components,
    search re-ranks candidates on the full vectors, so similarities are exact dot products."""
    rng = np.random.default_rng(12)
    dim, n = 128, 5000
    basis = np.linalg.qr(rng.standard_normal((dim, 24)))[0].T
    x = rng.standard_normal((n, 24)).astype(np.float32) @ basis + 0.15 * rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ann, brute = AnnIndex(dim, reduce_to=32), BruteForceIndex(dim)
    ann.add(np.arange(n), x)
    brute.add(np.arange(n), x)
    assert ann.projected_dim == 32
    queries = _near(rng, x[rng.integers(0, n, 200)], 0.95)
    truth = brute_force_truth(x, queries)[:, 0]
    got = [ann.search(q, 3) for q in queries]
    assert np.mean([ids[0] == t for (ids, _), t in zip(got, truth, strict=True)]) >= 0.98
    for q, (ids, sims) in zip(queries[:50], got[:50], strict=True):
        np.testing.assert_allclose(sims, x[ids] @ q, rtol=0, atol=1e-6)
        assert sims[0] >= sims[1] >= sims[2]


def test_ann_auto_projection_follows_the_data() -> None:
    """reduce_to="auto": structured data gets the components holding 80 % of the variance; unstructured
    (random) data would need most of them, so the graph keeps the full vectors."""
    rng = np.random.default_rng(13)
    dim = 128
    rand = AnnIndex(dim)
    rand.add(np.arange(3000), _unit(rng, 3000, dim))
    assert rand.projected_dim == dim
    basis = np.linalg.qr(rng.standard_normal((dim, 20)))[0].T
    x = rng.standard_normal((3000, 20)).astype(np.float32) @ basis + 0.05 * rng.standard_normal((3000, dim))
    low = AnnIndex(dim)
    low.add(np.arange(3000), (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    assert 16 <= low.projected_dim <= 24
    small = AnnIndex(dim)
    small.add(np.arange(50), _unit(rng, 50, dim))  # too few to fit a projection on
    assert small.projected_dim == dim
    with pytest.raises(ConfigError):
        AnnIndex(dim, reduce_to=0)
