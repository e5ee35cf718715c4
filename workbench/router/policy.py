"""Security policy: rules that force a tier before (or instead of) complexity classification.

A `Policy` holds a user flag (`force_tier`: send everything to one tier, e.g. "paranoid mode, stay local")
and content rules (regexes for secrets and personal data). When the flag is set or a rule matches, the
router sends the request to the forced tier whatever its complexity: a prompt carrying an API key or a card
number should not leave for the remote backend because it also happens to be hard. With the router's fast
path on, classification is then skipped altogether (the seeds' rigrun RouteQuery fast path); with it off,
the classifier still runs and its score is recorded, but the policy's tier wins all the same.

The default rules look for well-known credential shapes and a few kinds of personal data. They are a
screen, not a data-loss-prevention product: they have false negatives (a password typed without a
"password:" label) and some false positives (any e-mail address counts as personal data). Pass your own
`rules` to change them, or `Policy(rules=())` for the user flag only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workbench._types import Message

__all__ = ["DEFAULT_RULES", "Policy", "PolicyHit", "Rule", "luhn_ok"]


def luhn_ok(text: str) -> bool:
    """True when the digits of `text` pass the Luhn checksum (card numbers do; most digit runs don't)."""
    digits = [ord(c) - 48 for c in text if "0" <= c <= "9"]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Rule:
    """A named pattern; `confirm`, when given, must also accept the matched text (e.g. a checksum).

    `hints` (lower-case substrings) and `min_digits` are cheap pre-checks: the regex runs only when the
    lowered text holds one of the hints and at least `min_digits` digits. Nine regexes over every message
    cost ~15 µs; the pre-checks skip almost all of them on ordinary prompts. A hint must be a substring of
    every text the pattern can match, or the rule would miss it.
    """

    name: str
    pattern: re.Pattern[str]
    confirm: Callable[[str], bool] | None = None
    hints: tuple[str, ...] = ()
    min_digits: int = 0

    def search(self, text: str, lowered: str | None = None, digits: int | None = None) -> bool:
        """True when the rule matches `text` (`lowered` / `digits` may be passed in when already known)."""
        if self.hints:
            low = text.lower() if lowered is None else lowered
            if not any(map(low.__contains__, self.hints)):
                return False
        if self.min_digits:
            n = _digits(text) if digits is None else digits
            if n < self.min_digits:
                return False
        for m in self.pattern.finditer(text):
            if self.confirm is None or self.confirm(m.group(0)):
                return True
        return False


def _digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), hints=("private key",)),
    Rule("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), hints=("akia", "asia")),
    Rule("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), hints=("gh",)),
    Rule(
        "api_key",
        re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_-]{20,}|\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        hints=("sk-", "rk-", "pk-", "xox"),
    ),
    # A credential given as a value: "password: hunter22", "api_key=...", "access_token = ...".
    Rule(
        "credential_assignment",
        re.compile(r"\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*\S{4,}", re.I),
        hints=("passw", "pwd", "secret", "api", "token"),
    ),
    Rule(
        "email_address",
        re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        hints=("@",),
    ),
    Rule("us_ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), hints=("-",), min_digits=9),
    # 13-19 digits, optionally grouped by spaces or dashes, and a valid Luhn checksum.
    Rule("payment_card", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), luhn_ok, min_digits=13),
    Rule("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"), min_digits=4),
)


@dataclass(frozen=True, slots=True)
class PolicyHit:
    """Why the policy forced a tier: `rule` is "force_tier" for the user flag, else the rule's name.
    `tier` None means "the router's first (lowest, most local) tier"."""

    rule: str
    tier: str | None


@dataclass(frozen=True, slots=True)
class Policy:
    """When to force a tier.

    force_tier: every request goes to this tier (a user flag such as "local only").
    sensitive_tier: where a request matching a rule goes; None means the router's first tier, which by
        convention is the small/local one.
    rules: content rules, searched over every message (a secret pasted three turns ago still travels).
    """

    force_tier: str | None = None
    sensitive_tier: str | None = None
    rules: tuple[Rule, ...] = field(default=DEFAULT_RULES)

    @property
    def tiers_named(self) -> tuple[str, ...]:
        """The tier names this policy refers to (the router checks they exist)."""
        return tuple(t for t in (self.force_tier, self.sensitive_tier) if t is not None)

    def check(self, messages: Sequence[Message]) -> PolicyHit | None:
        """The first reason to force a tier, or None when the request may be classified."""
        if self.force_tier is not None:
            return PolicyHit("force_tier", self.force_tier)
        if not self.rules:
            return None
        for m in messages:
            text = m.content
            lowered = text.lower()
            digits = _digits(text)
            for rule in self.rules:
                if rule.search(text, lowered, digits):
                    return PolicyHit(rule.name, self.sensitive_tier)
        return None
