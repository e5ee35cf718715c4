from __future__ import annotations

import polars as pl
import pytest

from workbench import Optimizations
from workbench.metrics import chunks_frame, itl_frame, load_frame, save_frame, to_frame
from workbench.metrics.frames import CHUNK_SCHEMA, ITL_SCHEMA, REQUEST_SCHEMA


def test_empty_results_give_typed_empty_frames() -> None:
    f = to_frame([])
    assert f.height == 0
    for name, dtype in REQUEST_SCHEMA.items():
        assert f.schema[name] == dtype
    assert f.schema["opt_connection_pool"] == pl.Boolean and f.schema["opt_concurrency"] == pl.Int64
    assert dict(chunks_frame([]).schema) == CHUNK_SCHEMA
    assert dict(itl_frame([]).schema) == ITL_SCHEMA
    # Typed empties concatenate with real frames without casts.
    assert pl.concat([to_frame([]), to_frame([])]).height == 0


def test_to_frame_row_matches_result(make_result) -> None:
    r = make_result(tags={"variant": "opt", "repeat": 2, "warmup": False, "group": "g1"},
                    opts=Optimizations.transport(), usage=7)
    f = to_frame([r])
    row = f.row(0, named=True)
    m = r.metrics
    assert row["request_id"] == r.request.id and row["variant"] == "opt"
    assert row["repeat"] == 2 and row["warmup"] is False and row["group"] == "g1"
    assert row["ttft_ms"] == pytest.approx(10.0) and row["e2e_ms"] == pytest.approx(22.0)
    assert row["ttfb_ms"] == pytest.approx(m.ttfb_ms) and row["done_ms"] == pytest.approx(23.0)
    assert row["output_tokens"] == 7 and row["tokens_source"] == "usage"
    assert row["tpot_ms"] == pytest.approx(12.0 / 6) and row["tokens_per_s"] == pytest.approx(7 / 0.012)
    assert row["itl_ms"] == pytest.approx([5.0, 7.0])
    assert row["connect_ms"] == 3.0 and row["connection_reused"] is False and row["bytes_received"] == 100
    assert row["sent_ns"] == r.sent_ns and row["http_version"] == "HTTP/1.1" and row["cache"] == "off"
    assert row["opt_connection_pool"] is True and row["opt_exact_cache"] is False and row["opt_concurrency"] == 1
    assert row["n_chunks"] == 3 and row["text_chars"] == 3 and row["prompt"] == "hello"


def test_tags_union_clash_and_mixed_types(make_result) -> None:
    a = make_result(tags={"variant": "a", "repeat": 0, "status": "mine"})
    b = make_result(tags={"variant": "b", "label": 3})
    c = make_result(tags={"label": "three"})
    f = to_frame([a, b, c])
    # A tag named like a measured column never replaces it.
    assert f["status"].to_list() == ["ok", "ok", "ok"]
    assert f["tag_status"].to_list() == ["mine", None, None]
    assert f["repeat"].to_list() == [0, None, None]
    assert f["variant"].to_list() == ["a", "b", None]
    # Mixed int/str values fall back to strings rather than failing.
    assert f["label"].to_list() == [None, "3", "three"]


def test_error_result_has_nulls_not_zeros(make_result) -> None:
    r = make_result(texts_at_ms=(), status="error", error=RuntimeError("boom"))
    row = to_frame([r]).row(0, named=True)
    assert row["status"] == "error" and row["error_kind"] == "RuntimeError" and row["error"] == "boom"
    assert row["ttft_ms"] is None and row["tpot_ms"] is None and row["itl_ms"] == []
    assert row["output_tokens"] == 0


def test_chunks_frame_gaps_and_itl(make_result) -> None:
    r = make_result(texts_at_ms=((10.0, "ab"), (15.0, "c"), (22.0, "def")), empty_chunks_at_ms=(4.0, 18.0),
                    tags={"variant": "x", "repeat": 1})
    f = chunks_frame([r])
    assert f["i"].to_list() == [0, 1, 2, 3, 4]
    assert f["t_ms"].to_list() == pytest.approx([4.0, 10.0, 15.0, 18.0, 22.0])
    assert f["text_len"].to_list() == [0, 2, 1, 0, 3]
    assert f["gap_ms"].to_list()[1:] == pytest.approx([6.0, 5.0, 3.0, 4.0]) and f["gap_ms"][0] is None
    # ITL only between token-bearing chunks: the empty chunk at 18 ms does not split the 15 -> 22 gap.
    assert f["itl_ms"].to_list() == [None, None, pytest.approx(5.0), None, pytest.approx(7.0)]
    assert f["itl_ms"].drop_nulls().to_list() == pytest.approx(list(r.metrics.itl_ms))
    assert f["repeat"].to_list() == [1] * 5 and f["variant"].to_list() == ["x"] * 5


def test_itl_frame_pools_all_requests_with_tags(make_result) -> None:
    rs = [make_result(texts_at_ms=((10.0, "a"), (12.0, "b"), (17.0, "c")), tags={"variant": "a", "repeat": 0}),
          make_result(texts_at_ms=((10.0, "a"),), tags={"variant": "b", "repeat": 1}),
          make_result(texts_at_ms=((1.0, "a"), (2.5, "b")), tags={"variant": "b", "repeat": 2})]
    f = itl_frame(rs)
    assert f["itl_ms"].to_list() == pytest.approx([2.0, 5.0, 1.5])
    assert f["request_id"].to_list() == [rs[0].request.id, rs[0].request.id, rs[2].request.id]
    assert f["repeat"].to_list() == [0, 0, 2] and f["variant"].to_list() == ["a", "a", "b"]


def test_save_frame_to_dir_and_file(tmp_path, make_result) -> None:
    f = to_frame([make_result(tags={"variant": "a", "warmup": True}), make_result()])
    p1 = save_frame(f, tmp_path / "results", prefix="demo")
    p2 = save_frame(f, tmp_path / "results", prefix="demo")
    assert p1.parent == tmp_path / "results" and p1.name.startswith("demo-") and p1.suffix == ".parquet"
    assert p1 != p2 and p1.exists() and p2.exists()  # same second: never overwrites
    p3 = save_frame(f, tmp_path / "x" / "run.parquet")
    assert p3 == tmp_path / "x" / "run.parquet"
    back = load_frame(p3)
    assert back.schema == f.schema and back.equals(f)
