"""Verifiers: the second stage of a semantic lookup. The vector index proposes candidates above a cosine
floor; a verifier decides whether the stored answer may be served for the new question.

Why a second stage: every embedding cache scores one-word edits ("open" / "closed", "2014" / "2018",
"Salesforce" / "HubSpot", "my password" / "my colleague's password") as near-identical, so no cosine bar
separates them from paraphrases (see `workbench.cache.audit`). What separates them is *where* the two
questions differ, which is cheap to look at once a candidate is in hand.

Each verifier is a plain object: ``name``, ``check(query, candidate, similarity) -> Verdict`` and its
measured cost: ``stats()`` gives checks, accepted and the mean and total microseconds spent in `check`
(per-thread lock-free counters, so lookups stay lock-free).

- `TrapGuard` (deterministic, pure Python, ~50-100 us a check): lines the two questions up word by word
  (case, punctuation, UK/US spelling, plural -s and one-letter typos do not count as differences) and
  rejects a candidate whose differences touch a number, date or time, unit or currency, negation or an
  antonym, a comparative, a quantifier or scope word ("only", "without", "except", "part"), a named entity
  (a capitalised or unknown word), a person or possessor ("my" / "my colleague's"), or that is a one-slot
  swap (the same question with one short span replaced, or one content word added).
- `EmbedderCheck`: the pair re-scored by another (stronger) embedder against its own bar.
- `LLMJudge`: the backend model asked "would one answer serve both?" (yes/no, temperature 0), optionally
  only for candidates below a similarity; any error or unclear reply is a rejection. Its time is inside the
  lookup, so a judged hit's TTFT includes it.
- `AllOf`: several verifiers, cheapest first, all must accept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np

from workbench._exceptions import ConfigError
from workbench._types import Backend
from workbench.cache import _traps
from workbench.cache._http import BackendClient
from workbench.cache.counters import Counters
from workbench.cache.embedders import Embedder

__all__ = ["AllOf", "EmbedderCheck", "LLMJudge", "TrapGuard", "Verdict", "Verifier", "VerifierBase"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verifier's decision: `accept`, a short `reason` ("ok", "number", "negation", ...) and the words or
    score that decided it (`detail`)."""

    accept: bool
    reason: str = "ok"
    detail: str = ""


@runtime_checkable
class Verifier(Protocol):
    """Decides whether the answer stored for `candidate` may be served for `query`."""

    @property
    def name(self) -> str: ...

    def check(self, query: str, candidate: str, similarity: float) -> Verdict: ...

    def stats(self) -> dict[str, float]: ...


class VerifierBase:
    """Times every `check` (perf_counter_ns) and counts accepts; subclasses implement `decide` and `name`."""

    def __init__(self) -> None:
        self._counters = Counters(("checks", "accepted", "ns"))

    @property
    def name(self) -> str:
        return type(self).__name__

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} must implement decide()")

    def check(self, query: str, candidate: str, similarity: float) -> Verdict:
        t0 = time.perf_counter_ns()
        verdict = self.decide(query, candidate, similarity)
        c = self._counters
        c.incr("ns", time.perf_counter_ns() - t0)
        c.incr("checks")
        if verdict.accept:
            c.incr("accepted")
        return verdict

    def stats(self) -> dict[str, float]:
        """checks, accepted, total_us and cost_us (mean microseconds per check; nan before the first)."""
        s = self._counters.snapshot()
        n = s["checks"]
        return {
            "checks": n,
            "accepted": s["accepted"],
            "total_us": s["ns"] / 1e3,
            "cost_us": s["ns"] / 1e3 / n if n else float("nan"),
        }

    @property
    def cost_us(self) -> float:
        return self.stats()["cost_us"]

    def reset_stats(self) -> None:
        self._counters.reset()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"{type(self).__name__}(name={self.name!r}, checks={s['checks']:.0f}, cost_us={s['cost_us']:.1f})"
        )


# ---- the trap guard ------------------------------------------------------------------------------------


class TrapGuard(VerifierBase):
    """Rejects a candidate when the words in which it differs from the query touch numbers, dates, units,
    negation or antonyms, quantifiers and scope, people and possessors, or named entities, or when the two
    are the same question with one slot swapped (rules and word lists: `workbench.cache._traps`).

    `known_word(w)` says whether a lower-case word is ordinary vocabulary (default: a whole token of the
    static embedder's WordPiece vocabulary); a word unknown on *both* sides of a swap counts as a name
    (two drug or product names). Tokenised texts are memoised (bounded), so a stored text is read once.
    """

    def __init__(
        self,
        *,
        known_word: Callable[[str], bool] | None = None,
        slot_swap: bool = True,
        max_slot_tokens: int = 3,
        memo_size: int = 100_000,
    ) -> None:
        super().__init__()
        self._known = known_word
        self.slot_swap = slot_swap
        self.max_slot_tokens = max_slot_tokens
        self._memo: dict[str, tuple[_traps.Tok, ...]] = {}
        self._memo_size = memo_size

    @property
    def name(self) -> str:
        return "trap-guard" if self.slot_swap else "trap-guard(no slot swap)"

    @cached_property
    def _known_word(self) -> Callable[[str], bool]:
        if self._known is not None:
            return self._known
        from workbench.cache.embedders import default_embedder

        vocab = default_embedder().tokenizer.vocab_ids
        return vocab.__contains__

    def warm(self) -> TrapGuard:
        """Load the vocabulary now rather than inside the first check (which would then be slow)."""
        _ = self._known_word
        return self

    def prime(self, texts: Sequence[str]) -> None:
        """Tokenise stored texts ahead of the checks (a cache does it once per stored text)."""
        for t in texts:
            self.tokens(t)

    def tokens(self, text: str) -> tuple[_traps.Tok, ...]:
        toks = self._memo.get(text)
        if toks is None:
            toks = _traps.tokenize(text, self._known_word)
            if len(self._memo) < self._memo_size:
                self._memo[text] = toks
        return toks

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        found = _traps.compare(
            self.tokens(query),
            self.tokens(candidate),
            slot_swap=self.slot_swap,
            max_slot=self.max_slot_tokens,
        )
        return Verdict(True) if found is None else Verdict(False, found[0], found[1])


# ---- a second embedder ---------------------------------------------------------------------------------


class EmbedderCheck(VerifierBase):
    """Accepts when `embedder` (e.g. MiniLM) scores the pair at or above `min_cosine`. Embeddings of
    stored texts are memoised (bounded), so a check usually embeds only the query."""

    def __init__(self, embedder: Embedder, min_cosine: float, *, memo_size: int = 50_000) -> None:
        super().__init__()
        if not -1.0 <= min_cosine <= 1.0:
            raise ConfigError(f"min_cosine must be a cosine similarity in [-1, 1], got {min_cosine}")
        self.embedder = embedder
        self.min_cosine = min_cosine
        self._memo: dict[str, Any] = {}
        self._memo_size = memo_size

    @property
    def name(self) -> str:
        return f"{self.embedder.name}>={self.min_cosine:g}"

    def _vectors(self, texts: Sequence[str]) -> list[Any]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            for t, v in zip(todo, self.embedder.embed(todo), strict=True):
                if len(self._memo) < self._memo_size:
                    self._memo[t] = v
                else:
                    return [self._memo.get(x, v) if x != t else v for x in texts]
        return [self._memo[t] for t in texts]

    def prime(self, texts: Sequence[str]) -> None:
        """Embed many texts in one batch (an audit does this before timing checks)."""
        self._vectors(list(texts))

    def score(self, query: str, candidate: str) -> float:
        vq, vc = self._vectors([query, candidate])
        return float(np.dot(vq, vc))

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        s = self.score(query, candidate)
        return Verdict(s >= self.min_cosine, "ok" if s >= self.min_cosine else "low_similarity", f"{s:.4f}")


# ---- the backend model as a judge ----------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You check a response cache. Reply with exactly one word, yes or no: would one correct answer to the "
    "first question also be a correct and complete answer to the second? Different numbers, dates, names, "
    "people, negation or scope mean no."
)


class LLMJudge(VerifierBase, BackendClient):
    """The backend model as a yes/no judge, over httpx (Ollama ``/api/chat`` or OpenAI
    ``/v1/chat/completions``, not streamed, temperature 0). `only_below`: candidates at or above this
    similarity are accepted without a call (judge only those near the bar). Errors, timeouts and replies
    that are neither yes nor no are rejections: a judge that cannot answer never serves a hit."""

    def __init__(
        self,
        backend: Backend | str,
        model: str,
        *,
        protocol: Literal["ollama", "openai"] | None = None,
        only_below: float | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend if isinstance(backend, Backend) else Backend(backend)
        self.model = model
        proto = protocol or self.backend.protocol
        if proto not in ("ollama", "openai"):
            raise ConfigError(
                f"LLMJudge needs to know the backend's protocol, got {proto!r}",
                hint="pass protocol='ollama' or protocol='openai'",
            )
        self.protocol: Literal["ollama", "openai"] = proto
        self.only_below = only_below
        self._connect(self.backend, client, timeout)
        self.errors = Counters(("errors", "unclear", "skipped"))

    @property
    def name(self) -> str:
        return f"judge:{self.model}"

    def _ask(self, query: str, candidate: str) -> str:
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"First question: {candidate}\nSecond question: {query}"},
        ]
        if self.protocol == "ollama":
            body: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 3},
            }
            r = self._client.post("/api/chat", json=body)
            r.raise_for_status()
            return str(r.json()["message"]["content"])
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": 3, "stream": False}
        r = self._client.post("/v1/chat/completions", json=body)
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"]["content"])

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        if self.only_below is not None and similarity >= self.only_below:
            self.errors.incr("skipped")
            return Verdict(True, "above_band", f"{similarity:.4f}")
        try:
            reply = self._ask(query, candidate)
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            self.errors.incr("errors")
            return Verdict(False, "judge_error", f"{type(exc).__name__}: {exc}"[:200])
        word = re.match(r"\W*(\w+)", reply)
        first = word.group(1).lower() if word else ""
        if first == "yes":
            return Verdict(True, "ok", "yes")
        if first == "no":
            return Verdict(False, "judge_no", "no")
        self.errors.incr("unclear")
        return Verdict(False, "judge_unclear", reply[:80])


# ---- composition ---------------------------------------------------------------------------------------


class AllOf(VerifierBase):
    """Every verifier must accept; they run in the order given (put the cheapest first) and stop at the
    first rejection, whose verdict is returned."""

    def __init__(self, *verifiers: Verifier) -> None:
        super().__init__()
        if not verifiers:
            raise ConfigError("AllOf needs at least one verifier")
        self.verifiers = verifiers

    @property
    def name(self) -> str:
        return "+".join(v.name for v in self.verifiers)

    def prime(self, texts: Sequence[str]) -> None:
        for v in self.verifiers:
            prime = getattr(v, "prime", None)
            if callable(prime):
                prime(texts)

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        verdict = Verdict(True)
        for v in self.verifiers:
            verdict = v.check(query, candidate, similarity)
            if not verdict.accept:
                return verdict
        return verdict
