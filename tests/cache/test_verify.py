"""Verifiers: the trap guard on hand-written pairs, the second-embedder check, composition, and the LLM judge
(reply parsing on a mock transport; fail-safe and time accounting against the real simulator)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import numpy as np
import pytest

from workbench._exceptions import ConfigError
from workbench.cache.embedders import normalize_rows
from workbench.cache.semantic import SemanticTier
from workbench.cache.verify import AllOf, EmbedderCheck, LLMJudge, TrapGuard, Verdict, VerifierBase
from workbench.simulator import Profile, Simulator

# Written for this test (not taken from the audit pairs): (stored question, new question).
SAME = [
    ("How do I reset my password?", "how do i reset my password"),
    ("How do I change the address on my account?", "How do I chnage the adress on my account?"),
    ("What colour is the centre line?", "What color is the center line?"),
    ("How do I reset my password?", "Hi, can you tell me how I reset my password please?"),
    ("What do I need to book a meeting room?", "To book a meeting room, what do I need?"),
    ("Is there a table for two at 8?", "Is there a table for 2 at eight?"),
    ("Do you deliver on weekends?", "Do you deliver at the weekend?"),
]
TRAPS = [
    ("Is the 3pm train late?", "Is the 5pm train late?", "number"),
    ("Can I bring my dog?", "Can I not bring my dog?", "negation"),
    ("Can I bring my dog?", "Can't I bring my dog?", "negation"),
    ("Is the pool open today?", "Is the pool closed today?", "antonym"),
    ("How do I install the app on Windows?", "How do I install the app on Linux?", "entity"),
    ("is the museum open on monday", "is the museum open on tuesday", "contrast"),
    ("Which rooms have a balcony?", "Do all rooms have a balcony?", "scope"),
    ("How do I reset my password?", "How do I reset my colleague's password?", "person"),
    ("How do I move money from savings to my current account?",
     "How do I move money from my current account to savings?", "word_order"),
    ("What does my home insurance cover?", "What does my car insurance cover?", "slot_swap"),
    ("Is the room accessible?", "Is the room inaccessible?", "negation"),
    ("What is the dose for adults?", "What is the dose for children?", "contrast"),
    ("How do I move my pension from Acme into Globex?", "I want to move my pension from Globex to Acme", "entity_order"),
    ("Send money from my savings into my current account",
     "Send money into my savings out of my current account", "direction"),
]


@pytest.fixture(scope="module")
def guard() -> TrapGuard:
    return TrapGuard().warm()


@pytest.mark.parametrize(("stored", "query"), SAME)
def test_trap_guard_accepts_rewordings_typos_and_fillers(guard: TrapGuard, stored: str, query: str) -> None:
    verdict = guard.check(query, stored, 0.9)
    assert verdict.accept, verdict


@pytest.mark.parametrize(("stored", "query", "reason"), TRAPS)
def test_trap_guard_rejects_changed_slots(guard: TrapGuard, stored: str, query: str, reason: str) -> None:
    verdict = guard.check(query, stored, 0.99)
    assert not verdict.accept and verdict.reason == reason, verdict
    assert verdict.detail


def test_trap_guard_is_symmetric_on_traps(guard: TrapGuard) -> None:
    for stored, query, _ in TRAPS:
        assert not guard.check(stored, query, 0.99).accept, (stored, query)


def test_trap_guard_measures_its_cost() -> None:
    g = TrapGuard().warm()
    assert np.isnan(g.stats()["cost_us"])
    for stored, query, _ in TRAPS:
        g.check(query, stored, 0.9)
    s = g.stats()
    assert s["checks"] == len(TRAPS) and s["accepted"] == 0 and s["cost_us"] > 0
    assert s["total_us"] == pytest.approx(s["cost_us"] * len(TRAPS))
    g.reset_stats()
    assert g.stats()["checks"] == 0


def test_slot_swap_can_be_turned_off(guard: TrapGuard) -> None:
    loose = TrapGuard(slot_swap=False)
    pair = ("What does my car insurance cover?", "What does my home insurance cover?")
    assert not guard.check(*pair, 0.9).accept
    assert loose.check(*pair, 0.9).accept
    assert loose.name != guard.name


def test_a_verifier_without_decide_says_so() -> None:
    with pytest.raises(NotImplementedError, match="decide"):
        VerifierBase().check("a", "b", 1.0)


class TableEmbedder:
    name = "table"
    dim = 2

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: normalize_rows(np.array([v], np.float32))[0] for k, v in table.items()}
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, 2), np.float32)


def test_embedder_check_scores_with_its_own_embedder_and_memoises() -> None:
    emb = TableEmbedder({"a": [1, 0], "b": [0.96, 0.28], "c": [0.6, 0.8]})
    check = EmbedderCheck(emb, 0.9)
    assert check.name == "table>=0.9"
    v = check.check("b", "a", 0.5)
    assert v.accept and float(v.detail) == pytest.approx(0.96, abs=1e-4)
    assert not check.check("c", "a", 0.99).accept
    calls = emb.calls
    check.check("b", "a", 0.5)
    assert emb.calls == calls  # both texts memoised
    with pytest.raises(ConfigError):
        EmbedderCheck(emb, 1.5)


def test_all_of_stops_at_the_first_rejection(guard: TrapGuard) -> None:
    emb = TableEmbedder({"Is the pool open today?": [1, 0], "Is the pool closed today?": [1, 0]})
    check = EmbedderCheck(emb, 0.5)
    both = AllOf(TrapGuard(), check)
    assert both.name == "trap-guard+table>=0.5"
    v = both.check("Is the pool closed today?", "Is the pool open today?", 0.99)
    assert v == Verdict(False, "antonym", "open/closed") or (not v.accept and v.reason == "antonym")
    assert check.stats()["checks"] == 0  # never reached
    assert both.stats()["checks"] == 1
    with pytest.raises(ConfigError):
        AllOf()


# ---- the LLM judge -------------------------------------------------------------------------------------


def _judge_on(reply: str | None, protocol: str = "openai", status: int = 200, **kw: object) -> LLMJudge:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if status != 200:
            return httpx.Response(status, json={"error": "boom"})
        if protocol == "ollama":
            assert request.url.path == "/api/chat" and body["stream"] is False
            return httpx.Response(200, json={"message": {"role": "assistant", "content": reply}, "done": True})
        assert request.url.path == "/v1/chat/completions" and body["temperature"] == 0
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": reply}}]})

    client = httpx.Client(base_url="http://judge.test", transport=httpx.MockTransport(handler))
    judge = LLMJudge("http://judge.test", "m", protocol=protocol, client=client, **kw)  # type: ignore[arg-type]
    judge.seen = seen  # type: ignore[attr-defined]
    return judge


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
@pytest.mark.parametrize(
    ("reply", "accept", "reason"),
    [("Yes.", True, "ok"), ("yes", True, "ok"), ("No", False, "judge_no"), ("Maybe so", False, "judge_unclear")],
)
def test_judge_reads_yes_and_no(protocol: str, reply: str, accept: bool, reason: str) -> None:
    judge = _judge_on(reply, protocol)
    v = judge.check("Is the pool closed?", "Is the pool open?", 0.95)
    assert (v.accept, v.reason) == (accept, reason)
    body = judge.seen[0]  # type: ignore[attr-defined]
    user = body["messages"][1]["content"]
    assert "Is the pool open?" in user and "Is the pool closed?" in user


def test_judge_errors_are_rejections() -> None:
    judge = _judge_on(None, status=500)
    v = judge.check("a", "b", 0.9)
    assert not v.accept and v.reason == "judge_error" and "500" in v.detail
    assert judge.errors.snapshot()["errors"] == 1


def test_judge_only_below_skips_confident_candidates() -> None:
    judge = _judge_on("no", only_below=0.97)
    assert judge.check("a", "b", 0.98) == Verdict(True, "above_band", "0.9800")
    assert judge.seen == []  # type: ignore[attr-defined]
    assert not judge.check("a", "b", 0.96).accept


def test_judge_needs_a_protocol() -> None:
    with pytest.raises(ConfigError, match="protocol"):
        LLMJudge("http://127.0.0.1:9", "m")


def test_judge_on_the_simulator_fails_safe_and_its_time_is_in_the_lookup() -> None:
    # The simulator answers with seeded filler words, never a clean yes: every candidate must be rejected,
    # and the judge's round trips are part of the lookup time the tier reports.
    with Simulator(Profile.instant(ttft_ms=15.0, seed=1)) as sim, LLMJudge(
        sim.url, "sim-small", protocol="openai"
    ) as judge:
        tier = SemanticTier(verifier=judge, min_cosine=0.5)
        tier.add("p", "Is the pool open today?", "k")
        assert tier.lookup("p", "is the pool open today") is None
        js = judge.stats()
        assert js["checks"] == 1 and js["accepted"] == 0 and js["cost_us"] >= 15_000
        assert tier.stats()["verify_us"] >= js["total_us"]
        assert tier.stats()["lookup_us"] >= js["total_us"]
    with Simulator(Profile.instant(ttft_ms=400.0, seed=1)) as slow, LLMJudge(
        slow.url, "sim-small", protocol="ollama", timeout=0.05
    ) as judge:
        v = judge.check("a question", "another question", 0.9)
        assert not v.accept and v.reason == "judge_error"
