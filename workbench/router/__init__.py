"""Route each request to a tier (a small/local or large/remote model) by its complexity, with a security
fast path: a policy (user flag, secret/PII rules) that forces a tier and skips classification.

    from workbench.router import Router, Target
    router = Router({"small": Target(url_a, "sim-small"), "large": Target(url_b, "sim-large")})
    request, decision = router.apply(Request.chat("any", "Prove that sqrt(2) is irrational."))
    decision.tier, decision.reasons     # "large", ("math_terms", "reasoning_strong")
    decision.routing_us                 # µs spent routing (perf_counter_ns)

`decision_columns(decision)` gives the per-request frame columns (tier, routing_us, route_fast_path);
`tier_share_chart(frame)` charts tier shares; `load_prompts()` / `evaluate(router)` check the router
against the shipped labelled prompt set.
"""

from typing import TYPE_CHECKING, Any

from workbench.router.classify import (
    DEFAULT_THRESHOLD,
    WEIGHTS,
    Features,
    Score,
    approx_tokens,
    extract_features,
    score_features,
)
from workbench.router.dataset import LabelledPrompt, confusion, evaluate, load_prompts
from workbench.router.policy import DEFAULT_RULES, Policy, PolicyHit, Rule
from workbench.router.router import RouteDecision, Router, Target, decision_columns

if TYPE_CHECKING:
    from workbench.router.chart import tier_share_chart


def __getattr__(name: str) -> Any:
    # The chart pulls in altair (~0.5 s to import); a runner that only routes should not pay for it.
    if name == "tier_share_chart":
        from workbench.router.chart import tier_share_chart

        return tier_share_chart
    raise AttributeError(f"module 'workbench.router' has no attribute {name!r}")

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLD",
    "WEIGHTS",
    "Features",
    "LabelledPrompt",
    "Policy",
    "PolicyHit",
    "RouteDecision",
    "Router",
    "Rule",
    "Score",
    "Target",
    "approx_tokens",
    "confusion",
    "decision_columns",
    "evaluate",
    "extract_features",
    "load_prompts",
    "score_features",
    "tier_share_chart",
]
