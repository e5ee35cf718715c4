"""Workloads: the prompts a run sends, each with an id, a group and the cache relation it should show.

Shipped prompt sets live in `data/prompts/*.jsonl` (one object a line: id, group, text, relation =
unique|repeat|paraphrase, expected_cache = miss|exact|semantic). A repeat or paraphrase always comes after
its group's original in the file, so an exact or semantic cache has something honest to hit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from workbench._exceptions import ConfigError
from workbench._types import Request

if TYPE_CHECKING:
    import polars as pl

__all__ = ["PROMPTS_DIR", "PromptItem", "Workload", "available_prompt_sets"]

Relation = Literal["unique", "repeat", "paraphrase"]
ExpectedCache = Literal["miss", "exact", "semantic"]

_EXPECTED: dict[str, ExpectedCache] = {"unique": "miss", "repeat": "exact", "paraphrase": "semantic"}


def _find_prompts_dir() -> Path:
    # Source checkout: <repo>/data/prompts next to the package.
    return Path(__file__).resolve().parents[2] / "data" / "prompts"


PROMPTS_DIR = _find_prompts_dir()


@dataclass(frozen=True, slots=True)
class PromptItem:
    id: str
    text: str
    group: str = ""
    relation: Relation = "unique"
    expected_cache: ExpectedCache = "miss"
    max_tokens: int | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any], index: int) -> PromptItem:
        text = row.get("text") or row.get("prompt")
        if not isinstance(text, str) or not text:
            raise ConfigError(f"prompt #{index} has no text", hint="each prompt needs a non-empty 'text'")
        relation = str(row.get("relation") or "unique")
        if relation not in _EXPECTED:
            raise ConfigError(
                f"prompt #{index}: relation {relation!r}", hint="use unique, repeat or paraphrase"
            )
        expected = str(row.get("expected_cache") or _EXPECTED[relation])
        if expected not in ("miss", "exact", "semantic"):
            raise ConfigError(
                f"prompt #{index}: expected_cache {expected!r}", hint="use miss, exact or semantic"
            )
        max_tokens = row.get("max_tokens")
        return cls(
            id=str(row.get("id") or f"p{index + 1:03d}"),
            text=text,
            group=str(row.get("group") or ""),
            relation=relation,  # type: ignore[arg-type]
            expected_cache=expected,  # type: ignore[arg-type]
            max_tokens=None if max_tokens is None else int(max_tokens),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "text": self.text,
            "relation": self.relation,
            "expected_cache": self.expected_cache,
            "max_tokens": self.max_tokens,
        }


def available_prompt_sets() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.jsonl"))


@dataclass(frozen=True, slots=True)
class Workload:
    """An ordered list of prompts plus how to turn each into a `Request` (model, endpoint, limits).

    `model=None` (the default) means the first model the server lists: `compare()` asks the server when the
    run starts (see `AsyncClient.default_model`) and fills it in.
    """

    items: tuple[PromptItem, ...]
    model: str | None = None
    endpoint: Literal["chat", "completion"] = "chat"
    max_tokens: int | None = None
    # Greedy decoding by default: caches bypass sampled requests, and a benchmark wants repeatable output.
    temperature: float | None = 0.0
    system: str | None = None
    name: str = "custom"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.items:
            raise ConfigError("workload is empty", hint="give at least one prompt")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[PromptItem]:
        return iter(self.items)

    # ---- constructors ----

    @classmethod
    def prompts(cls, name: str = "mixed", *, limit: int | None = None, **kwargs: Any) -> Workload:
        """A shipped prompt set from data/prompts (see `available_prompt_sets()`)."""
        path = PROMPTS_DIR / f"{name}.jsonl"
        if not path.exists():
            raise ConfigError(
                f"no prompt set {name!r}", hint=f"available: {', '.join(available_prompt_sets()) or 'none'}"
            )
        wl = cls.from_jsonl(path, name=name, **kwargs)
        return wl.head(limit) if limit is not None else wl

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> Workload:
        rows = [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]
        kwargs.setdefault("name", Path(path).stem)
        return cls.from_records(rows, **kwargs)

    @classmethod
    def from_records(cls, rows: Iterable[Mapping[str, Any] | str], **kwargs: Any) -> Workload:
        """Plain strings or mappings (text; optional id, group, relation, expected_cache, max_tokens)."""
        items = tuple(
            PromptItem.from_mapping({"text": row} if isinstance(row, str) else row, i)
            for i, row in enumerate(rows)
        )
        return cls(items=items, **kwargs)

    @classmethod
    def from_list(cls, prompts: Sequence[str], **kwargs: Any) -> Workload:
        return cls.from_records(prompts, **kwargs)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, **kwargs: Any) -> Workload:
        """A polars frame with a `text` (or `prompt`) column and optional id/group/relation/expected_cache."""
        if "text" not in frame.columns and "prompt" not in frame.columns:
            raise ConfigError("frame has no 'text' or 'prompt' column", hint=f"columns: {frame.columns}")
        return cls.from_records(frame.to_dicts(), **kwargs)

    @classmethod
    def synthetic(
        cls,
        n: int,
        *,
        input_tokens: int = 64,
        output_tokens: int = 64,
        spread: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> Workload:
        """`n` unique prompts of about `input_tokens` words each, asking for about `output_tokens` tokens.

        `spread` is the relative standard deviation of both lengths (lognormal-free: normal, clipped to >= 1),
        seeded, so the same call gives the same workload. One word is taken as one token: a simulator counts
        that way, and for a real tokenizer the ratio is near 1.3, which the user can fold into the targets.
        """
        if n < 1:
            raise ConfigError("synthetic workload needs n >= 1")
        rng = np.random.default_rng(seed)

        def lengths(mean: int) -> np.ndarray:
            if spread <= 0:
                return np.full(n, mean, dtype=np.int64)
            return np.maximum(1, np.round(rng.normal(mean, spread * mean, size=n))).astype(np.int64)

        ins, outs = lengths(input_tokens), lengths(output_tokens)
        vocab = np.array(_VOCAB)
        items = []
        for i in range(n):
            words = vocab[rng.integers(0, len(vocab), size=int(ins[i]))]
            items.append(
                PromptItem(
                    id=f"s{i + 1:04d}",
                    text=f"[{seed}:{i}] " + " ".join(words.tolist()),
                    group=f"synthetic-{i + 1:04d}",
                    max_tokens=int(outs[i]),
                )
            )
        kwargs.setdefault("name", f"synthetic(n={n},in={input_tokens},out={output_tokens},spread={spread})")
        return cls(items=tuple(items), **kwargs)

    # ---- transforms ----

    def head(self, n: int) -> Workload:
        return replace(self, items=self.items[:n])

    def balanced(self, n: int) -> Workload:
        """About `n` prompts taken by whole groups, in file order, so every kept repeat or paraphrase
        keeps its original (cache relations stay honest); `head(n)` of a shipped set is mostly originals.
        """
        chosen: set[str] = set()
        count = 0
        sizes: dict[str, int] = {}
        for it in self.items:
            sizes[it.group or it.id] = sizes.get(it.group or it.id, 0) + 1
        for it in self.items:
            g = it.group or it.id
            if count >= n:
                break
            if g not in chosen:
                chosen.add(g)
                count += sizes[g]
        return replace(self, items=tuple(it for it in self.items if (it.group or it.id) in chosen))

    def with_options(self, **changes: Any) -> Workload:
        return replace(self, **changes)

    # ---- requests ----

    def request(self, item: PromptItem, **tags: Any) -> Request:
        """A fresh request (new id) for `item`, tagged with the prompt's id, group and cache relation."""
        all_tags = {
            "prompt_id": item.id,
            "group": item.group,
            "relation": item.relation,
            "expected_cache": item.expected_cache,
            **tags,
        }
        if self.model is None:
            raise ConfigError(
                "this workload names no model yet",
                hint="pass model='...', or run it through compare(), which asks the server for one",
            )
        max_tokens = item.max_tokens if item.max_tokens is not None else self.max_tokens
        common: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": max_tokens,
            "tags": all_tags,
            "options": dict(self.options),
        }
        if self.endpoint == "completion":
            return Request.completion(self.model, item.text, **common)
        return Request.chat(self.model, item.text, system=self.system, **common)

    def warmup_request(self, i: int, **tags: Any) -> Request:
        """A warm-up request whose prompt is not in the workload, so it cannot prime a cache for it."""
        item = PromptItem(
            id=f"warmup-{i}", text=f"Warm-up request {i}: reply with one short sentence.", group="warmup"
        )
        return self.request(item, **tags)

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for it in self.items:
            counts[it.relation] = counts.get(it.relation, 0) + 1
        return {
            "name": self.name,
            "n": len(self.items),
            "relations": counts,
            "model": self.model,
            "endpoint": self.endpoint,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "system": self.system,
            "options": dict(self.options),
        }

    def to_records(self) -> list[dict[str, Any]]:
        return [it.as_dict() for it in self.items]


_VOCAB = (
    "latency stream token cache server request socket buffer window river mountain harbor lantern "
    "garden copper signal thread kernel packet market violet orbit ledger meadow engine pocket canvas "
    "silver bridge anchor season puzzle harvest compass quartz timber velvet summit ember glacier "
    "fabric mirror parcel rocket saddle tunnel walnut yellow zephyr almond basket candle dragon falcon"
).split()
