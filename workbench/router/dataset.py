"""The shipped labelled prompt set, and how well a router agrees with it.

`workbench/router/_data/prompts.jsonl` holds ~200 prompts written for this package (no public dataset),
one JSON object a line: `id`, `category` (chitchat, factual, code, math, reasoning, writing, multiturn,
sensitive), `tier` ("small" or "large", the label a person gave by the rubric in `classify`), and either
`prompt` (one user message) or `messages` (a conversation). `forced: true` marks prompts carrying made-up
secrets or personal data, which the default policy must keep on the first tier.

`split` says how each prompt was used: "tune" prompts (202) were in view while the classifier's weights
were set, so accuracy on them is in-sample; "holdout" prompts (30) were written after the weights were
fixed and scored once, so they give a (small) out-of-sample figure. The labels are judgement calls on the
two-tier rubric in `workbench.router.classify`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson
import polars as pl

from workbench._types import Message
from workbench.router.router import RouteDecision, Router

__all__ = ["LabelledPrompt", "confusion", "evaluate", "load_prompts"]

_DATA = "prompts.jsonl"


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    id: str
    category: str
    tier: str
    messages: tuple[Message, ...]
    forced: bool = False
    split: str = "tune"

    @property
    def text(self) -> str:
        """The last message's text (what a table shows)."""
        return self.messages[-1].content if self.messages else ""


def _parse(line: str, where: str) -> LabelledPrompt:
    try:
        row = orjson.loads(line)
        if "messages" in row:
            msgs = tuple(Message(str(m["role"]), str(m["content"])) for m in row["messages"])
        else:
            msgs = (Message("user", str(row["prompt"])),)
        return LabelledPrompt(
            str(row["id"]),
            str(row["category"]),
            str(row["tier"]),
            msgs,
            bool(row.get("forced", False)),
            str(row.get("split", "tune")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(
            f"{where}: not a labelled prompt ({e!r}); "
            "each line needs id, category, tier, and prompt or messages"
        ) from e


def load_prompts(path: str | Path | None = None) -> list[LabelledPrompt]:
    """The shipped labelled set, or a JSONL file in the same format."""
    if path is None:
        text = resources.files("workbench.router").joinpath("_data", _DATA).read_text("utf-8")
        where = f"workbench/router/_data/{_DATA}"
    else:
        text = Path(path).read_text("utf-8")
        where = str(path)
    out = [_parse(line, f"{where}:{k}") for k, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not out:
        raise ValueError(f"{where} holds no prompts")
    return out


def evaluate(
    router: Router, prompts: Iterable[LabelledPrompt] | None = None, *, fast_path: bool | None = None
) -> pl.DataFrame:
    """Route every labelled prompt; one row each: id, split, category, expected, tier, correct, forced,
    score, reasons, route_fast_path, routing_us. Accuracy is `frame["correct"].mean()`."""
    items: Sequence[LabelledPrompt] = list(prompts) if prompts is not None else load_prompts()
    rows = []
    for p in items:
        d: RouteDecision = router.route(p.messages, fast_path=fast_path)
        rows.append(
            {
                "id": p.id,
                "split": p.split,
                "category": p.category,
                "expected": p.tier,
                "tier": d.tier,
                "correct": d.tier == p.tier,
                "forced": p.forced,
                "score": d.score,
                "reasons": ",".join(d.reasons),
                "route_fast_path": d.fast_path,
                "routing_us": d.routing_us,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"score": pl.Float64})


def confusion(frame: pl.DataFrame) -> pl.DataFrame:
    """Expected tier by chosen tier counts from an `evaluate` frame (rows: expected; columns: chosen)."""
    tiers = sorted(set(frame["expected"].to_list()) | set(frame["tier"].to_list()))
    counts = frame.group_by("expected", "tier").len()
    rows = []
    for exp in tiers:
        row: dict[str, str | int] = {"expected": exp}
        for got in tiers:
            hit = counts.filter((pl.col("expected") == exp) & (pl.col("tier") == got))
            row[got] = int(hit["len"][0]) if hit.height else 0
        rows.append(row)
    return pl.DataFrame(rows)
