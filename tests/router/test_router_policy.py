"""Security fast path: the policy forces a tier, and with the fast path on classification is skipped."""

from __future__ import annotations

import re

import pytest

import workbench.router.router as router_mod
from workbench.router import Policy, Router, Rule, Target
from workbench.router.classify import to_messages
from workbench.router.policy import DEFAULT_RULES, luhn_ok

TIERS = {"local": Target("http://127.0.0.1:9", "small-model"), "cloud": Target("https://api.test", "big-model")}
HARD = "Prove step by step that there are infinitely many primes, and compare two proofs."

SECRETS = {
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "aws_access_key": "key AKIAIOSFODNN7EXAMPLE here",
    "github_token": "token ghp_" + "a1B2" * 9,
    "api_key": "use sk-" + "x" * 24,
    "credential_assignment": "db password: correct-horse",
    "email_address": "write to jane.roe@example.com",
    "us_ssn": "ssn 078-05-1120",
    "payment_card": "card 4111 1111 1111 1111",
    "iban": "IBAN GB82 WEST 1234 5698 7654 32",
}


@pytest.mark.parametrize("rule", sorted(SECRETS))
def test_each_default_rule_fires_on_its_example(rule: str) -> None:
    hit = Policy().check(to_messages(SECRETS[rule]))
    assert hit is not None and hit.rule == rule


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "My order number is 1234 5678 9012 3456, where is it?",  # 16 digits, Luhn fails
        "Call the function with the api and a token bucket",  # hints but no assignment
        "The meeting is on 2024-05-01 at 10:30",
        "Ask about gh pages and sk-learn",  # prefixes, too short to be keys
    ],
)
def test_ordinary_text_passes(text: str) -> None:
    assert Policy().check(to_messages(text)) is None


def test_luhn() -> None:
    assert luhn_ok("4111-1111-1111-1111")
    assert not luhn_ok("4111-1111-1111-1112")
    assert not luhn_ok("1234")


def test_rules_scan_every_message_not_only_the_last() -> None:
    conv = [
        {"role": "user", "content": "my key is AKIAIOSFODNN7EXAMPLE"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "now explain IAM"},
    ]
    assert Router(TIERS).route(conv).tier == "local"


def test_fast_path_skips_classification_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = router_mod.extract_features

    def counting(messages):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(messages)

    monkeypatch.setattr(router_mod, "extract_features", counting)
    router = Router(TIERS)
    prompt = HARD + " My card is 4111 1111 1111 1111."
    d = router.route(prompt)
    assert (d.tier, d.fast_path, d.score, d.reasons, d.policy_rule) == (
        "local",
        True,
        None,
        ("policy:payment_card",),
        "payment_card",
    )
    assert calls == []
    # Fast path off (the toggle's baseline): the classifier runs and its score is kept, the tier is the same.
    slow = router.route(prompt, fast_path=False)
    assert calls == [1]
    assert slow.tier == "local" and not slow.fast_path and slow.forced
    assert slow.score is not None and slow.score >= 1.0
    assert slow.reasons[-1] == "policy:payment_card" and "reasoning_strong" in slow.reasons
    # Without a secret the same hard prompt goes to the cloud.
    assert router.route(HARD).tier == "cloud"


def test_router_level_fast_path_setting() -> None:
    prompt = "password: swordfish123"
    assert Router(TIERS, fast_path=False).route(prompt).fast_path is False
    assert Router(TIERS, fast_path=False).route(prompt, fast_path=True).fast_path is True


def test_force_tier_flag_forces_any_prompt() -> None:
    router = Router(TIERS, policy=Policy(force_tier="local"))
    d = router.route(HARD)
    assert d.tier == "local" and d.fast_path and d.policy_rule == "force_tier"
    up = Router(TIERS, policy=Policy(force_tier="cloud")).route("hi")
    assert up.tier == "cloud" and up.target.model == "big-model"


def test_sensitive_tier_and_custom_rules() -> None:
    rule = Rule("ticket", re.compile(r"\bINC-\d{6}\b"), hints=("inc-",))
    router = Router(TIERS, policy=Policy(rules=(rule,), sensitive_tier="cloud"))
    assert router.route("see INC-123456").tier == "cloud"
    # only the custom rule is active: a card number is no longer special
    assert router.route("card 4111 1111 1111 1111").policy_rule is None
    assert Router(TIERS, policy=Policy(rules=())).route(SECRETS["api_key"]).policy_rule is None


def test_policy_naming_an_unknown_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="policy names tier"):
        Router(TIERS, policy=Policy(force_tier="gpu"))


def test_hints_never_hide_a_default_rule_match() -> None:
    # A hint must be a substring of every match: check each rule on its example with hints removed.
    for rule in DEFAULT_RULES:
        text = SECRETS[rule.name]
        bare = Rule(rule.name, rule.pattern, rule.confirm)
        assert bare.search(text) == rule.search(text) is True, rule.name
