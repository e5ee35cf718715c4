"""The router: a policy check, then (unless the policy decided) the complexity classifier, then a tier.

    router = Router({"small": Target("http://127.0.0.1:11434", "llama3.2:1b"),
                     "large": Target("https://api.example.com", "big-model")})
    decision = router.route(Request.chat("ignored", "Prove that sqrt(2) is irrational."))
    decision.tier, decision.target.model, decision.reasons, decision.routing_us

Tiers are ordered from the smallest/most local to the largest/most remote; `thresholds` (one fewer than
tiers, ascending) cut the classifier's score into them. With two tiers the default cut is the classifier's
`DEFAULT_THRESHOLD`. `route` times itself with `time.perf_counter_ns` from entry to the decision, so
`routing_us` is the client-side cost of routing one request, comparable with its TTFT.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workbench._types import Backend, Message, ProtocolName, Request
from workbench.router.classify import DEFAULT_THRESHOLD, extract_features, score_features, to_messages
from workbench.router.policy import Policy

__all__ = ["RouteDecision", "Router", "Target", "decision_columns"]

Prompt = Request | str | Sequence[Message | Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a tier's requests go: a backend URL and the model name to ask it for."""

    url: str
    model: str
    protocol: ProtocolName | Literal["auto"] = "auto"

    def backend(self, **kwargs: Any) -> Backend:
        """A `Backend` for this target (kwargs: api_key, verify, name)."""
        return Backend(self.url, protocol=self.protocol, **kwargs)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """One routing decision.

    tier / target: where the request goes. score: the classifier's points (None when the fast path skipped
    classification). reasons: the features that fired ("code_block", ...) and, when a policy forced the
    tier, "policy:<rule>". fast_path: the policy decided and classification was skipped.
    routing_us: time spent in `Router.route`, µs (perf_counter_ns).
    """

    tier: str
    target: Target
    score: float | None
    reasons: tuple[str, ...]
    fast_path: bool
    routing_us: float
    policy_rule: str | None = None

    @property
    def forced(self) -> bool:
        """True when a policy chose the tier (fast path or not)."""
        return self.policy_rule is not None


def decision_columns(decision: RouteDecision) -> dict[str, Any]:
    """The columns a per-request frame carries for a routed request: tier, routing_us, route_fast_path."""
    return {"tier": decision.tier, "routing_us": decision.routing_us, "route_fast_path": decision.fast_path}


class Router:
    """Pick a tier per request: a security fast path first, complexity classification otherwise.

    tiers: tier name -> Target, ordered from small/local to large/remote (a dict keeps its order).
    thresholds: ascending score cuts between consecutive tiers (len(tiers) - 1 of them); for two tiers the
        default is `DEFAULT_THRESHOLD` (score >= 1.0 goes to the second tier).
    policy: what forces a tier (user flag, secret/PII rules); `Policy(rules=())` for none.
    fast_path: when a policy forces the tier, skip classification (True) or classify anyway and record the
        score (False, the baseline the `router_fast_path` toggle is measured against). The tier is the
        policy's either way: turning the fast path off never lets a secret through.
    """

    def __init__(
        self,
        tiers: Mapping[str, Target],
        *,
        thresholds: Sequence[float] | None = None,
        policy: Policy | None = None,
        fast_path: bool = True,
    ) -> None:
        if len(tiers) < 2:
            raise ValueError(
                f"a router needs at least two tiers, got {list(tiers)}: "
                "pass e.g. {'small': Target(url, model), 'large': Target(url, model)}"
            )
        for name, target in tiers.items():
            if not isinstance(target, Target):
                raise TypeError(f"tier {name!r} maps to {type(target).__name__}; use Target(url, model)")
        self.tiers: dict[str, Target] = dict(tiers)
        self._names = tuple(self.tiers)
        if thresholds is None:
            if len(self._names) != 2:
                raise ValueError(
                    f"{len(self._names)} tiers need {len(self._names) - 1} thresholds (ascending scores); "
                    "only a two-tier router has a default"
                )
            thresholds = (DEFAULT_THRESHOLD,)
        cuts = tuple(float(t) for t in thresholds)
        if len(cuts) != len(self._names) - 1 or any(a >= b for a, b in itertools.pairwise(cuts)):
            raise ValueError(
                f"thresholds {list(cuts)} must be {len(self._names) - 1} strictly ascending scores "
                f"for tiers {list(self._names)}"
            )
        self.thresholds = cuts
        self.policy = policy if policy is not None else Policy()
        unknown = [t for t in self.policy.tiers_named if t not in self.tiers]
        if unknown:
            raise ValueError(
                f"the policy names tier(s) {unknown}, but the router's tiers are {list(self.tiers)}"
            )
        self.fast_path = fast_path

    def tier_for(self, score: float) -> str:
        """The tier a classifier score falls in (no policy)."""
        k = 0
        for cut in self.thresholds:
            if score >= cut:
                k += 1
            else:
                break
        return self._names[k]

    def route(self, prompt: Prompt, *, fast_path: bool | None = None) -> RouteDecision:
        """Decide where `prompt` (a Request, a text, or a message list) goes; `fast_path` overrides the
        router's setting for this call (the runner passes `Optimizations.router_fast_path`)."""
        t0 = time.perf_counter_ns()
        use_fast = self.fast_path if fast_path is None else fast_path
        messages = to_messages(prompt)
        hit = self.policy.check(messages)
        if hit is not None and use_fast:
            tier = hit.tier or self._names[0]
            target = self.tiers[tier]
            us = (time.perf_counter_ns() - t0) / 1000.0
            return RouteDecision(tier, target, None, (f"policy:{hit.rule}",), True, us, hit.rule)
        score = score_features(extract_features(messages))
        if hit is not None:
            tier = hit.tier or self._names[0]
            reasons = (*score.names, f"policy:{hit.rule}")
        else:
            tier = self.tier_for(score.value)
            reasons = score.names
        target = self.tiers[tier]
        us = (time.perf_counter_ns() - t0) / 1000.0
        return RouteDecision(tier, target, score.value, reasons, False, us, hit.rule if hit else None)

    def apply(self, request: Request, *, fast_path: bool | None = None) -> tuple[Request, RouteDecision]:
        """Route `request` and return it re-addressed to the tier's model, tagged with the decision's
        columns (tags travel into results and frames), with the decision. Send it to
        `decision.target.backend()`."""
        decision = self.route(request, fast_path=fast_path)
        tags = {**request.tags, **decision_columns(decision)}
        return dataclasses.replace(request, model=decision.target.model, tags=tags), decision

    def __repr__(self) -> str:
        tiers = ", ".join(f"{k}={v.model}@{v.url}" for k, v in self.tiers.items())
        return f"Router({tiers}; thresholds={list(self.thresholds)}, fast_path={self.fast_path})"
