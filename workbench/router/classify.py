"""Complexity classifier: a few cheap text features of a prompt, a weighted score, and the reasons behind it.

Pure Python over precompiled regexes, deterministic (no randomness, no model), a few µs for a chat-sized
prompt. It answers one question: does this request need the bigger tier (a larger model, or the remote
backend), or will the small/local one do? The rubric the shipped labelled set follows (and these weights
were set for) is:

* small: chit-chat, short factual look-ups, definitions, simple arithmetic, short rewrites/translations;
* large: writing/debugging code, non-trivial maths (algebra, calculus, proofs), multi-step reasoning
  (compare, analyse, design, "step by step"), long prompts, and conversations several turns deep.

The score is a sum of points, one entry per feature that fired (see `WEIGHTS`). A prompt goes to the large
tier when the score reaches the router's threshold (`DEFAULT_THRESHOLD` = 1.0): one strong signal (a code
block, LaTeX, a code-writing task, a strong reasoning cue, a long prompt, a deep conversation) is enough on
its own; weak signals (a "why", a medium length, a couple of numbers with operators) need to add up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from workbench._types import Message, Request

__all__ = [
    "DEFAULT_THRESHOLD",
    "WEIGHTS",
    "Features",
    "Score",
    "approx_tokens",
    "extract_features",
    "score_features",
    "to_messages",
]

# One strong signal alone crosses it (weights of 1.0), weak ones (0.3-0.5) need company.
DEFAULT_THRESHOLD = 1.0

# Points per feature. Strong signals are worth the whole threshold; weak ones a third to a half of it, so
# two or three weak signals together (a medium-length "why" question with numbers) also reach the large tier.
WEIGHTS: Mapping[str, float] = {
    "long_prompt": 1.0,  # >= LONG_TOKENS: long contexts (documents, logs) need the larger context/model
    "medium_prompt": 0.4,  # >= MEDIUM_TOKENS: more than a one-liner, but not decisive by itself
    "code_block": 1.0,  # ``` fences, a traceback or indented code: code to read, fix or explain
    "code_task": 1.0,  # "write/implement/debug/refactor ... function/class/script/query"
    "code_keywords": 0.5,  # >= 2 language keywords (def, return, SELECT, #include, =>, ...)
    "code_symbols": 0.5,  # a high share of {}[]();=<> characters: pasted code without fences
    "latex": 1.0,  # \frac, \int, $...$: typeset maths
    "math_terms": 0.6,  # integral, derivative, eigenvalue, probability, theorem, ...
    "math_terms_many": 0.4,  # >= 2 of them: the question is about the maths, not just mentioning it
    "math_task": 0.6,  # solve / compute / find the derivative / how many ways: asks for working
    "math_expr": 0.4,  # >= 2 arithmetic/algebra operators between operands (3x + 2 = 11)
    "reasoning_strong": 1.0,  # prove, step by step, compare, trade-offs, design, analyse, derive, ...
    "reasoning_weak": 0.3,  # why, explain, how does: often a short factual answer
    "multi_question": 0.3,  # two or more questions in the last message
    "long_form": 1.0,  # "write an essay/proposal/cover letter", "1500 words": long structured output
    "constraints": 0.5,  # >= 3 bulleted or numbered requirement lines
    "deep_conversation": 1.0,  # >= DEEP_TURNS user turns: context to keep track of
    "some_conversation": 0.3,  # >= 2 user turns
}

# Rough token count: ~4 characters per token for English text with BPE tokenizers (OpenAI's rule of
# thumb). Exact tokenisation would need the target model's tokenizer and cost far more than the routing.
CHARS_PER_TOKEN = 4
MEDIUM_TOKENS = 40  # a couple of sentences
LONG_TOKENS = 150  # a paragraph or more: pasted text, a spec, a log
DEEP_TURNS = 3  # the third user turn: earlier answers now shape the next one
SYMBOL_SHARE = 0.06  # share of code punctuation above which a text reads as code (prose is ~0.01)
SYMBOL_MIN_CHARS = 24  # below this, one "f(x)" would count as code
SYMBOL_MIN_COUNT = 4  # and at least this many: "sqrt(2)" in a sentence is maths notation, not code

# Why words and substrings instead of one big regex per cue: Python's `re` tries an alternation of 30
# phrases at every position of the text (~3-9 µs per cue on a chat prompt); one `\w+` pass into a set, set
# intersections and `in` checks on the lowered text cost a fraction of that. The few patterns that need
# structure (a verb *near* a noun) run only when the cheap check already found both words.
_WORD = re.compile(r"\w+")
_FENCE = re.compile(r"```|~~~|^(?: {4}|\t)\S", re.MULTILINE)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\bat [\w.$]+\([\w.]+:\d+\)|\w+Error: |panic: ")
_TRACEBACK_HINTS = ("Traceback (", "Error: ", "panic: ", "\tat ", "    at ")

_CODE_VERBS = frozenset(
    "write implement code debug fix refactor optimize optimise port convert rewrite".split()
)
_CODE_NOUNS = frozenset(
    "function functions method methods class classes script scripts program programs query queries regex "
    "regexp endpoint endpoints api algorithm code bug bugs loop module parser test tests sql python "
    "javascript typescript rust java bash golang shell dockerfile makefile component decorator iterator "
    "generator queue cache server client cli".split()
)
_CODE_TASK = re.compile(
    r"\b(?:write|implement|code|debug|fix|refactor|optimi[sz]e|port|convert|rewrite)\b"
    r"[^.?!\n]{0,60}?(?:\b(?:" + "|".join(sorted(_CODE_NOUNS)) + r")\b|\bc\+\+)",
    re.IGNORECASE,
)
# Keywords that are rarely English words ("return", "try", "this" are left out: they fire on prose).
_CODE_KEYWORDS = frozenset(
    "def lambda elif async await const var void struct impl fn func println printf nullptr null namespace "
    "typedef sizeof malloc printf isinstance kwargs args".split()
)
# Case-sensitive, with the space: "SELECT ... FROM" is SQL, "where are you from" is not.
_CODE_OPERATORS = ("=>", "->", "::", "!=", "==", "++", "&&", "||", "#include", "SELECT ", "FROM ", "WHERE ")
_CODE_SYMBOLS = "{}[]();=<>_|&"
# A command must be followed by a non-letter: "\\int_0" has no word boundary before "_".
_LATEX = re.compile(
    r"\\(?:frac|int|sum|prod|sqrt|lim|partial|alpha|beta|theta|lambda|sigma|mathbb|cdot|infty|begin|left|"
    r"right|binom|log|sin|cos)(?![A-Za-z])|\$[^$\n]{1,200}\$"
)
_MATH_WORDS = frozenset(
    "integral integrate derivative differentiate eigenvalue eigenvalues eigenvector eigenvectors matrix "
    "matrices determinant probability variance theorem lemma polynomial quadratic logarithm series "
    "converge converges convergence modulo factorise factorize permutation permutations combinations "
    "equation equations inequality vector gradient induction irrational bayes bayesian".split()
)
_MATH_PHRASES = ("expected value", "limit of", "prime factor", "hypothesis test", "standard deviation")
# operand operator operand: "3x + 2", "17*23", "x^2", "1/n". An operand is a digit, a bracket or a one-letter
# variable (not inside a word, so "well-known" and "e-mail" are not maths).
_MATH_EXPR = re.compile(
    r"(?:\d|\)|(?<![A-Za-z])[A-Za-z](?![A-Za-z]))\s*[-+*/^×÷=]\s*(?:\d|\(|(?<![A-Za-z])[A-Za-z](?![A-Za-z]))"
)
_MATH_OPS = ("+", "-", "*", "/", "^", "=", "×", "÷")
# A maths task: a verb that asks for working ("solve for x", "find the derivative", "how many ways").
_MATH_TASK_WORDS = frozenset(
    "solve compute calculate simplify factorise factorize expand integrate differentiate".split()
)
_MATH_TASK_PHRASES = (
    "find the roots", "find its roots", "find the root of", "find the limit", "find the derivative",
    "find the integral", "find the eigen", "find the determinant", "find the inverse", "find the minimum",
    "find the maximum", "how many ways",
)
_STRONG_WORDS = frozenset(
    "prove proof compare comparison contrast tradeoff tradeoffs argue weigh analyse analyze analysis "
    "design architecture architect derive justify evaluate critique plan strategy detailed implications "
    "versus".split()
)
_STRONG_PHRASES = (
    "show that", "step by step", "step-by-step", "show your work", "show the work", "show the calculation",
    "show the steps", "trade-off", "pros and cons", "for and against", "reason through", "your reasoning",
    "walk me through", "in detail", "what would happen", "root cause", "which is better",
)
_WEAK_WORDS = frozenset("why explain describe".split())
_WEAK_PHRASES = ("how does", "how do ", "how can", "what causes", "should i ")
# Long-form writing: a writing verb on a document noun, or an explicit length of hundreds of words.
_LONG_VERBS = frozenset("write draft compose".split())
_LONG_NOUNS = frozenset(
    "essay essays story proposal report article chapter letter speech post whitepaper".split()
)
_LONG_FORM = re.compile(
    r"\b(?:write|draft|compose)\b[^.?!\n]{0,40}?\b(?:essay|story|proposal|report|article|chapter|"
    r"cover letter|speech|blog post|white ?paper)s?\b|\b\d{3,5}[- ]words?\b",
    re.IGNORECASE,
)
_CONSTRAINT_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


class Features(NamedTuple):
    """What the classifier saw. Counts are over the last user message unless named otherwise.
    (A NamedTuple: built once per request, it costs a third of a frozen dataclass.)"""

    tokens: int  # approximate tokens over all messages (CHARS_PER_TOKEN)
    user_turns: int  # user messages in the conversation
    code_blocks: int
    code_task: bool
    code_keywords: int
    symbol_share: float
    latex: int
    math_terms: int
    math_exprs: int
    math_task: bool
    reasoning_strong: int
    reasoning_weak: int
    questions: int
    constraint_lines: int
    long_form: bool


@dataclass(frozen=True, slots=True)
class Score:
    """The classifier's verdict: total points, and each feature that fired with its points (fixed order)."""

    value: float
    reasons: tuple[tuple[str, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.reasons)


def approx_tokens(text: str) -> int:
    """Tokens by the ~4 characters per token rule (rounded up; 0 for an empty text)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def to_messages(prompt: Request | str | Sequence[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    """A request, a bare prompt or a message list as messages (a completion prompt is one user message)."""
    if isinstance(prompt, Request):
        if prompt.endpoint == "completion":
            return (Message("user", prompt.prompt or ""),)
        return prompt.messages
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    out: list[Message] = []
    for m in prompt:
        if isinstance(m, Message):
            out.append(m)
        else:
            try:
                out.append(Message(str(m["role"]), str(m["content"])))
            except KeyError as e:
                raise ValueError(
                    f"a message needs 'role' and 'content'; got keys {sorted(m)}: "
                    "pass dicts like {'role': 'user', 'content': '...'}"
                ) from e
    return tuple(out)


def extract_features(messages: Sequence[Message]) -> Features:
    """Features of a conversation. Cues are read from the last user message (what is being asked now);
    length and depth from the whole conversation (what the model must take in)."""
    total_chars = 0
    user_turns = 0
    last = ""
    for m in messages:
        total_chars += len(m.content)
        if m.role == "user":
            user_turns += 1
            last = m.content
    if user_turns == 0 and messages:
        last = messages[-1].content
    return _features(last, total_chars, user_turns)


def _count_in(text: str, phrases: tuple[str, ...]) -> int:
    # map over the bound __contains__ keeps the loop in C (a generator expression costs ~3x more).
    return sum(map(text.__contains__, phrases))


def _features(last: str, total_chars: int, user_turns: int) -> Features:
    n = len(last)
    lowered = last.lower()
    words = set(_WORD.findall(lowered))
    code_task = False
    if words & _CODE_VERBS and (words & _CODE_NOUNS or "c++" in lowered):
        code_task = _CODE_TASK.search(last) is not None
    long_form = False
    if (words & _LONG_VERBS and words & _LONG_NOUNS) or "words" in words or "word" in words:
        long_form = _LONG_FORM.search(last) is not None
    tracebacks = len(_TRACEBACK.findall(last)) if any(map(last.__contains__, _TRACEBACK_HINTS)) else 0
    symbols = sum(map(last.count, _CODE_SYMBOLS)) if n >= SYMBOL_MIN_CHARS else 0
    if symbols < SYMBOL_MIN_COUNT:
        symbols = 0
    return Features(
        tokens=-(-total_chars // CHARS_PER_TOKEN),
        user_turns=user_turns,
        code_blocks=len(_FENCE.findall(last)) + tracebacks,
        code_task=code_task,
        code_keywords=len(words & _CODE_KEYWORDS) + _count_in(last, _CODE_OPERATORS),
        symbol_share=symbols / n if n else 0.0,
        latex=len(_LATEX.findall(last)) if ("\\" in last or "$" in last) else 0,
        math_terms=len(words & _MATH_WORDS) + _count_in(lowered, _MATH_PHRASES),
        math_exprs=len(_MATH_EXPR.findall(last)) if any(map(last.__contains__, _MATH_OPS)) else 0,
        math_task=bool(words & _MATH_TASK_WORDS) or _count_in(lowered, _MATH_TASK_PHRASES) > 0,
        reasoning_strong=len(words & _STRONG_WORDS) + _count_in(lowered, _STRONG_PHRASES),
        reasoning_weak=len(words & _WEAK_WORDS) + _count_in(lowered, _WEAK_PHRASES),
        questions=last.count("?"),
        constraint_lines=len(_CONSTRAINT_LINE.findall(last)),
        long_form=long_form,
    )


def score_features(f: Features, weights: Mapping[str, float] = WEIGHTS) -> Score:
    """Sum the points of the features that fired. Length and depth tiers are exclusive (long beats medium)."""
    # (feature, whether it fired) in the order of `reasons`; a tier's lower step holds only below the upper
    rules = (
        ("long_prompt", f.tokens >= LONG_TOKENS),
        ("medium_prompt", MEDIUM_TOKENS <= f.tokens < LONG_TOKENS),
        ("code_block", f.code_blocks),
        ("code_task", f.code_task),
        ("code_keywords", f.code_keywords >= 2),
        ("code_symbols", f.symbol_share >= SYMBOL_SHARE),
        ("latex", f.latex),
        ("math_terms", f.math_terms),
        ("math_terms_many", f.math_terms >= 2),
        ("math_task", f.math_task),
        ("math_expr", f.math_exprs >= 2),
        ("reasoning_strong", f.reasoning_strong),
        # "why"/"explain" add little next to a strong cue, so only one of the two counts.
        ("reasoning_weak", f.reasoning_weak and not f.reasoning_strong),
        ("multi_question", f.questions >= 2),
        ("long_form", f.long_form),
        ("constraints", f.constraint_lines >= 3),
        ("deep_conversation", f.user_turns >= DEEP_TURNS),
        ("some_conversation", 2 <= f.user_turns < DEEP_TURNS),
    )
    fired = [name for name, hit in rules if hit]
    reasons = tuple((name, weights.get(name, 0.0)) for name in fired)
    return Score(round(sum(p for _, p in reasons), 6), reasons)
