"""StreamResults to polars frames: one row per request, per chunk, or per inter-token gap.

Every frame has a fixed base schema, so an empty list of results still gives a typed, empty frame that
charts and summaries can consume. Request tags (variant, repeat, group, warmup, ...) become columns, and
each optimization toggle becomes an `opt_<name>` column, so any run can be grouped by what was on.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from workbench._types import StreamResult
from workbench.optimizations import Optimizations

__all__ = [
    "CHUNK_SCHEMA",
    "ITL_SCHEMA",
    "REQUEST_SCHEMA",
    "chunks_frame",
    "error_summary",
    "failure_line",
    "itl_frame",
    "load_frame",
    "save_frame",
    "to_frame",
    "tokens_note",
]

_NS_PER_MS = 1_000_000.0

# Columns every request frame has, in order. `variant` is always present (null when untagged) because it is
# the grouping key every comparison uses; other tags appear only when some request carries them.
REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "variant": pl.String(),
    "model": pl.String(),
    "backend": pl.String(),
    "protocol": pl.String(),
    "endpoint": pl.String(),
    "http_version": pl.String(),
    "status": pl.String(),
    "error_kind": pl.String(),
    "error": pl.String(),
    "finish_reason": pl.String(),
    "cache": pl.String(),
    "cache_similarity": pl.Float64(),
    "saved_ms": pl.Float64(),
    "saved_tokens": pl.Int64(),
    "ttfb_ms": pl.Float64(),
    "ttft_ms": pl.Float64(),
    # first answer-text chunk: equals ttft_ms unless the model reasoned or called a tool first
    "first_text_ms": pl.Float64(),
    "e2e_ms": pl.Float64(),
    "done_ms": pl.Float64(),
    "tpot_ms": pl.Float64(),
    "itl_ms": pl.List(pl.Float64()),
    "output_tokens": pl.Int64(),
    "tokens_source": pl.String(),
    "tokens_per_s": pl.Float64(),
    "connect_ms": pl.Float64(),
    "connection_reused": pl.Boolean(),
    "bytes_received": pl.Int64(),
    "n_chunks": pl.Int64(),
    "text_chars": pl.Int64(),
    "reasoning_chars": pl.Int64(),
    "n_tool_calls": pl.Int64(),
    # choices the stream carried when more than one (n > 1); 1 otherwise
    "n_choices": pl.Int64(),
    "prompt_chars": pl.Int64(),
    "prompt": pl.String(),
    "wasted_ms_after_stop": pl.Float64(),
    "sent_ns": pl.Int64(),
    "end_ns": pl.Int64(),
}

CHUNK_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "variant": pl.String(),
    "i": pl.Int64(),
    "t_ms": pl.Float64(),
    "text_len": pl.Int64(),
    "n_bytes": pl.Int64(),
    # "text", "reasoning" or "tool_call": what the chunk carried (reasoning and tool-call chunks have
    # text_len 0; they are token chunks all the same, see workbench.metrics.recorder)
    "kind": pl.String(),
    # Gap to the previous chunk of any kind; `itl_ms` is the gap to the previous token-bearing chunk,
    # null for the first token and for chunks without output (DESIGN.md's ITL definition).
    "gap_ms": pl.Float64(),
    "itl_ms": pl.Float64(),
}

ITL_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "variant": pl.String(),
    "i": pl.Int64(),
    "itl_ms": pl.Float64(),
}


def _opt_schema() -> dict[str, pl.DataType]:
    return {
        f"opt_{f.name}": (pl.Int64() if f.type in (int, "int") else pl.Boolean())
        for f in dataclasses.fields(Optimizations)
    }


_OPT_SCHEMA = _opt_schema()


def _tag_columns(tags: Sequence[Mapping[str, Any]], taken: Iterable[str]) -> dict[str, pl.Series]:
    """One column per tag key seen on any request; `variant` is handled by the base schema.

    A key that clashes with a base column gets a `tag_` prefix rather than silently replacing measured data.
    Mixed-type tag values fall back to strings instead of failing the whole frame.
    """
    taken = set(taken)
    keys: list[str] = []
    for t in tags:
        for k in t:
            if k != "variant" and k not in keys:
                keys.append(k)
    out: dict[str, pl.Series] = {}
    for key in keys:
        name = f"tag_{key}" if key in taken else key
        values = [t.get(key) for t in tags]
        try:
            out[name] = pl.Series(name, values, strict=True)
        except (TypeError, pl.exceptions.PolarsError):
            out[name] = pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String())
    return out


def _variant(tags: Mapping[str, Any]) -> str | None:
    v = tags.get("variant")
    return None if v is None else str(v)


def _opt_columns(opts: Sequence[Mapping[str, Any]]) -> dict[str, pl.Series]:
    cols: dict[str, pl.Series] = {}
    for name, dtype in _OPT_SCHEMA.items():
        key = name[4:]
        cols[name] = pl.Series(name, [o.get(key) for o in opts], dtype=dtype)
    # Toggles a newer client knows and this catalogue does not: keep them rather than drop them.
    extra: list[str] = []
    for o in opts:
        for k in o:
            if f"opt_{k}" not in _OPT_SCHEMA and k not in extra:
                extra.append(k)
    for k in extra:
        values = [o.get(k) for o in opts]
        try:
            cols[f"opt_{k}"] = pl.Series(f"opt_{k}", values, strict=True)
        except (TypeError, pl.exceptions.PolarsError):
            cols[f"opt_{k}"] = pl.Series(f"opt_{k}", [None if v is None else str(v) for v in values])
    return cols


def _ms(t_ns: int, sent_ns: int) -> float:
    return (t_ns - sent_ns) / _NS_PER_MS


# to_frame's columns that hold a StreamResult field, or a Metrics field, as it is
_RESULT_FIELDS = (
    "backend",
    "protocol",
    "status",
    "error_kind",
    "error",
    "finish_reason",
    "cache",
    "cache_similarity",
    "saved_ms",
    "saved_tokens",
    "wasted_ms_after_stop",
    "sent_ns",
    "end_ns",
)
_METRIC_FIELDS = (
    "ttfb_ms",
    "ttft_ms",
    "first_text_ms",
    "e2e_ms",
    "done_ms",
    "tpot_ms",
    "output_tokens",
    "tokens_source",
    "tokens_per_s",
    "connect_ms",
    "connection_reused",
    "bytes_received",
)


def to_frame(results: Iterable[StreamResult]) -> pl.DataFrame:
    """One row per request, with every Metrics field, the request's tags and `opt_*` toggle columns."""
    res = list(results)
    rows: dict[str, list[Any]] = {name: [] for name in REQUEST_SCHEMA}
    for r in res:
        m = r.metrics
        for name in _RESULT_FIELDS:
            rows[name].append(getattr(r, name))
        for name in _METRIC_FIELDS:
            rows[name].append(getattr(m, name))
        rows["request_id"].append(r.request.id)
        rows["variant"].append(_variant(r.request.tags))
        rows["model"].append(r.request.model)
        rows["endpoint"].append(r.request.endpoint)
        rows["http_version"].append(r.http_version or None)
        rows["itl_ms"].append(list(m.itl_ms))
        rows["n_chunks"].append(len(r.chunks))
        rows["text_chars"].append(len(r.text))
        rows["reasoning_chars"].append(len(r.reasoning))
        rows["n_tool_calls"].append(len(r.tool_calls))
        rows["n_choices"].append(max(len(r.choices), 1))
        rows["prompt_chars"].append(r.request.prompt_chars)
        rows["prompt"].append(r.request.last_user_text)
    base = pl.DataFrame(rows, schema=REQUEST_SCHEMA)
    opts = pl.DataFrame(_opt_columns([r.optimizations for r in res]))
    if opts.width == 0:
        opts = pl.DataFrame(schema=_OPT_SCHEMA)
    tags = _tag_columns([r.request.tags for r in res], [*REQUEST_SCHEMA, *opts.columns])
    parts = [base, pl.DataFrame(list(tags.values())), opts] if tags else [base, opts]
    return pl.concat(parts, how="horizontal")


def _with_tags(frame: pl.DataFrame, res: Sequence[StreamResult], owner: Sequence[int]) -> pl.DataFrame:
    """Repeat each request's tag values onto its chunk/gap rows (`owner[k]` = index of row k's request)."""
    tags = _tag_columns([r.request.tags for r in res], frame.columns)
    if not tags:
        return frame
    idx = pl.Series("idx", owner, dtype=pl.Int64())
    per_request = pl.DataFrame(list(tags.values()))
    return pl.concat([frame, per_request.select(pl.all().gather(idx))], how="horizontal")


def _per_request_frame(
    results: Iterable[StreamResult],
    schema: dict[str, pl.DataType],
    rows_of: Callable[[StreamResult], Iterator[tuple[Any, ...]]],
) -> pl.DataFrame:
    """Several rows per request: its id, variant and the row's position `i`, then the values `rows_of`
    yields for each row (the schema's remaining columns, in order), then the request's tags."""
    res = list(results)
    rows: dict[str, list[Any]] = {name: [] for name in schema}
    ids, variants, positions = rows["request_id"], rows["variant"], rows["i"]
    rest = [rows[name] for name in list(schema)[3:]]
    owner: list[int] = []
    for k, r in enumerate(res):
        variant = _variant(r.request.tags)
        for i, values in enumerate(rows_of(r)):
            ids.append(r.request.id)
            variants.append(variant)
            positions.append(i)
            for column, value in zip(rest, values, strict=True):
                column.append(value)
            owner.append(k)
    return _with_tags(pl.DataFrame(rows, schema=schema), res, owner)


def _chunk_rows(r: StreamResult) -> Iterator[tuple[Any, ...]]:
    prev_ns: int | None = None
    prev_tok_ns: int | None = None
    for c in r.chunks:
        itl = None
        if c.text or c.kind != "text":
            itl = None if prev_tok_ns is None else _ms(c.t_ns, prev_tok_ns)
            prev_tok_ns = c.t_ns
        gap = None if prev_ns is None else _ms(c.t_ns, prev_ns)
        yield _ms(c.t_ns, r.sent_ns), len(c.text), c.n_bytes, c.kind, gap, itl
        prev_ns = c.t_ns


def chunks_frame(results: Iterable[StreamResult]) -> pl.DataFrame:
    """One row per recorded chunk: arrival time since send, kind, text length and the gaps to earlier ones."""
    return _per_request_frame(results, CHUNK_SCHEMA, _chunk_rows)


def itl_frame(results: Iterable[StreamResult]) -> pl.DataFrame:
    """Pooled inter-token latencies (a distribution over all requests), one row per gap."""
    return _per_request_frame(results, ITL_SCHEMA, lambda r: ((gap,) for gap in r.metrics.itl_ms))


def tokens_note(frame: pl.DataFrame) -> str | None:
    """One line saying for how many successful requests `output_tokens` was counted from chunks because the
    server sent no usage (llama-cpp-python, TGI without include_usage, ...), or None when all had usage."""
    if "tokens_source" not in frame.columns or frame.height == 0:
        return None
    ok = frame.filter(pl.col("status") == "ok") if "status" in frame.columns else frame
    counted = ok.filter(pl.col("tokens_source") == "chunks").height
    if counted == 0:
        return None
    return (
        f"output_tokens of {counted} of {ok.height} requests counted from received chunks: the server sent "
        "no usage (tokens_source=chunks); a chunk can carry more than one token, so tokens/s may read low"
    )


ERROR_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "error_kind": pl.String(),
    "http_status": pl.Int64(),
    "count": pl.Int64(),
    "share_pct": pl.Float64(),
    "variants": pl.String(),
    "first_error": pl.String(),
}

# StatusError messages read "<METHOD> <url> returned HTTP <status>..." (_exceptions.http_status_error)
_HTTP_STATUS = re.compile(r"returned HTTP (\d{3})")


def error_summary(data: pl.DataFrame | Iterable[StreamResult]) -> pl.DataFrame:
    """A run's failed requests (status "error") grouped by error kind and HTTP status, most common first:
    count, share of all requests given (%), the variants they hit, and the first error message of each group
    (status, URL, body excerpt and hint, as the client wrote it). Empty (typed) when nothing failed.

    Takes a request frame (`to_frame`, `RunResult.frame`) or StreamResults; cancelled requests are not
    failures.
    """
    frame = data if isinstance(data, pl.DataFrame) else to_frame(data)
    if frame.height == 0 or "status" not in frame.columns:
        return pl.DataFrame(schema=ERROR_SUMMARY_SCHEMA)
    total = frame.height
    failed = frame.filter(pl.col("status") == "error")
    if failed.height == 0:
        return pl.DataFrame(schema=ERROR_SUMMARY_SCHEMA)
    variant = pl.col("variant") if "variant" in failed.columns else pl.lit(None, pl.String())
    grouped = (
        failed.with_row_index("_order")
        .with_columns(
            pl.col("error_kind").fill_null("unknown"),
            pl.col("error").str.extract(_HTTP_STATUS.pattern, 1).cast(pl.Int64).alias("http_status"),
            variant.cast(pl.String).alias("_variant"),
        )
        .group_by("error_kind", "http_status", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("_variant").drop_nulls().unique(maintain_order=True).str.join(", ").alias("variants"),
            pl.col("error").sort_by("_order").drop_nulls().first().alias("first_error"),
            pl.col("_order").min().alias("_first"),
        )
    )
    return (
        grouped.with_columns((100.0 * pl.col("count") / total).alias("share_pct"))
        .sort(["count", "_first"], descending=[True, False])
        .select(list(ERROR_SUMMARY_SCHEMA))
        .cast(ERROR_SUMMARY_SCHEMA)  # type: ignore[arg-type]
    )


def failure_line(frame: pl.DataFrame) -> str | None:
    """One line saying how many requests of `frame` failed and the most common reason; None when none did."""
    errors = error_summary(frame)
    if errors.height == 0:
        return None
    n_failed = int(errors.get_column("count").sum())
    top = errors.row(0, named=True)
    what = "all" if n_failed == frame.height else f"{n_failed} of"
    kinds = ", ".join(
        f"{r['count']}× {r['error_kind']}" + (f" (HTTP {r['http_status']})" if r["http_status"] else "")
        for r in errors.iter_rows(named=True)
    )
    return f"{what} {frame.height} requests failed: {kinds}. First: {top['first_error']}"


def _timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")


def save_frame(frame: pl.DataFrame, path_or_dir: str | Path, *, prefix: str = "results") -> Path:
    """Write `frame` as Parquet. A directory (existing, or a path without suffix) gets a timestamped name,
    `<prefix>-YYYYmmdd-HHMMSS.parquet`, never overwriting an earlier file. Returns the path written."""
    target = Path(path_or_dir)
    if target.is_dir() or not target.suffix:
        target.mkdir(parents=True, exist_ok=True)
        stem = f"{prefix}-{_timestamp()}"
        path = target / f"{stem}.parquet"
        n = 1
        while path.exists():
            path = target / f"{stem}-{n}.parquet"
            n += 1
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        path = target
    frame.write_parquet(path)
    return path


def load_frame(path: str | Path) -> pl.DataFrame:
    """Read a frame written by `save_frame`."""
    return pl.read_parquet(Path(path))
