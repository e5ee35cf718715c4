"""Router construction, decisions, determinism, the per-request columns, and routing against the simulator."""

from __future__ import annotations

import dataclasses

import pytest

from workbench import Client, Request
from workbench.metrics import to_frame
from workbench.router import RouteDecision, Router, Target, decision_columns
from workbench.simulator import Profile, Simulator

TIERS = {"small": Target("http://127.0.0.1:9", "sim-small"), "large": Target("http://127.0.0.1:9", "sim-large")}


def test_two_tier_default_threshold_and_targets() -> None:
    router = Router(TIERS)
    easy = router.route("hi!")
    hard = router.route("Write a Python function that parses ISO dates, with tests.")
    assert (easy.tier, easy.target.model, easy.score) == ("small", "sim-small", 0.0)
    assert hard.tier == "large" and hard.target.model == "sim-large" and "code_task" in hard.reasons
    assert not easy.fast_path and not hard.fast_path and easy.policy_rule is None


def test_three_tiers_need_thresholds() -> None:
    tiers = {**TIERS, "huge": Target("https://x.test", "huge")}
    with pytest.raises(ValueError, match="thresholds"):
        Router(tiers)
    with pytest.raises(ValueError, match="ascending"):
        Router(tiers, thresholds=(2.0, 1.0))
    router = Router(tiers, thresholds=(1.0, 2.0))
    assert [router.tier_for(s) for s in (0.0, 0.99, 1.0, 1.99, 2.0, 5.0)] == [
        "small", "small", "large", "large", "huge", "huge"
    ]
    long_hard = "Prove step by step, in detail:\n```\nx = 1\n```\n" + "context " * 200
    assert router.route(long_hard).tier == "huge"


def test_bad_configuration_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="at least two tiers"):
        Router({"only": TIERS["small"]})
    with pytest.raises(TypeError, match="Target"):
        Router({"a": TIERS["small"], "b": "http://x"})  # type: ignore[dict-item]


def test_decisions_are_deterministic() -> None:
    router = Router(TIERS)
    prompts = ["hi", "Compare Go and Rust for a CLI.", "Solve 3x + 1 = 7", "card 4111 1111 1111 1111"]
    for p in prompts:
        a, b = router.route(p), Router(TIERS).route(p)
        assert dataclasses.replace(a, routing_us=0.0) == dataclasses.replace(b, routing_us=0.0)
        assert a.routing_us > 0


def test_decision_columns_and_apply() -> None:
    router = Router(TIERS)
    req = Request.chat("whatever", "Prove that sqrt(2) is irrational.", tags={"variant": "v"})
    routed, d = router.apply(req)
    assert isinstance(d, RouteDecision)
    assert routed.model == "sim-large" and routed.id == req.id and routed.messages == req.messages
    cols = decision_columns(d)
    assert set(cols) == {"tier", "routing_us", "route_fast_path"}
    assert cols["tier"] == "large" and cols["route_fast_path"] is False and cols["routing_us"] == d.routing_us
    assert routed.tags == {"variant": "v", **cols}
    assert "sim-large" in repr(router)


def test_routed_requests_reach_their_tier_on_the_simulator() -> None:
    """Real HTTP: each routed request is answered under its tier's model, and the frame carries the columns."""
    with Simulator(Profile(ttft_ms=5, ttft_per_prompt_token_ms=0, token_delay_ms=0.5, default_tokens_min=4, default_tokens_max=8)) as sim:
        tiers = {"small": Target(sim.url, "sim-small", "ollama"), "large": Target(sim.url, "sim-large", "ollama")}
        router = Router(tiers)
        prompts = ["hello!", "Write a SQL query for the top 3 customers per country.", "my email is a.b@example.com"]
        results = []
        with Client(tiers["small"].backend()) as client:
            for p in prompts:
                req, d = router.apply(Request.chat("unrouted", p, max_tokens=4))
                assert d.target.backend().url == sim.url
                results.append(client.run(req))
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.request.model for r in results] == ["sim-small", "sim-large", "sim-small"]
    frame = to_frame(results)
    assert frame["tier"].to_list() == ["small", "large", "small"]
    assert frame["route_fast_path"].to_list() == [False, False, True]
    assert (frame["routing_us"] > 0).all()
