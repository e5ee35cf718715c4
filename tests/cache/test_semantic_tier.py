"""SemanticTier: hits at min_cosine, partition isolation, removal, replacement, no embedding on empty partitions;
the verified path (candidates past a rejected one, stats, served log) and the default configuration."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from workbench._exceptions import ConfigError
from workbench.cache.embedders import default_embedder, normalize_rows
from workbench.cache.index import BruteForceIndex
from workbench.cache.semantic import DEFAULT_MIN_COSINE, SemanticTier
from workbench.cache.verify import Verdict, VerifierBase


class TableEmbedder:
    """Texts map to fixed vectors: similarities in the tests are exact and known."""

    name = "table"
    dim = 3

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: normalize_rows(np.array([v], dtype=np.float32))[0] for k, v in table.items()}
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, 3), np.float32)


def _vec_at(cos: float) -> list[float]:
    return [cos, float(np.sqrt(1 - cos * cos)), 0.0]


@pytest.fixture
def emb() -> TableEmbedder:
    return TableEmbedder(
        {
            "stored": [1, 0, 0],
            "close": _vec_at(0.95),
            "edge": _vec_at(0.9),
            "far": _vec_at(0.5),
            "other": [0, 0, 1],
        }
    )


def test_hit_above_min_cosine_and_miss_below(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None, min_cosine=0.9)
    tier.add("p", "stored", "k1")
    m = tier.lookup("p", "close")
    assert m is not None and (m.key, m.matched_text) == ("k1", "stored")
    assert m.similarity == pytest.approx(0.95, abs=1e-6) and m.verdict is None and m.lookup_us > 0
    assert tier.lookup("p", "far") is None
    assert len(tier) == 1 and "k1" in tier


def test_min_cosine_is_inclusive(emb: TableEmbedder) -> None:
    probe = SemanticTier(emb, verifier=None, min_cosine=-1.0)
    probe.add("p", "stored", "k1")
    s = probe.lookup("p", "edge").similarity  # type: ignore[union-attr]
    at = SemanticTier(emb, verifier=None, min_cosine=s)
    above = SemanticTier(emb, verifier=None, min_cosine=float(np.nextafter(np.float32(s), np.float32(2))))
    for tier in (at, above):
        tier.add("p", "stored", "k1")
    assert at.lookup("p", "edge") is not None
    assert above.lookup("p", "edge") is None


def test_best_match_wins(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None, min_cosine=0.4)
    tier.add("p", "far", "k-far")
    tier.add("p", "close", "k-close")
    m = tier.lookup("p", "stored")
    assert m is not None and m.key == "k-close"


def test_same_text_in_another_partition_never_matches(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None, min_cosine=0.9)
    tier.add("partition-A", "stored", "k1")
    assert tier.lookup("partition-B", "stored") is None
    assert tier.lookup("partition-A", "stored") is not None
    tier.add("partition-B", "stored", "k2")
    assert tier.lookup("partition-B", "stored").key == "k2"  # type: ignore[union-attr]
    assert tier.lookup("partition-A", "stored").key == "k1"  # type: ignore[union-attr]
    assert tier.partitions == 2


def test_empty_or_unknown_partition_does_not_embed(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None)
    assert tier.lookup("nobody", "stored") is None
    assert emb.calls == 0


def test_remove_and_replace(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None, min_cosine=0.9)
    tier.add("p", "stored", "k1")
    tier.remove("k1")
    tier.remove("k1")  # absent: no error
    assert tier.lookup("p", "stored") is None and len(tier) == 0 and tier.partitions == 0
    tier.add("p", "stored", "k1")
    tier.add("q", "other", "k1")  # same key again: the old entry goes, even from another partition
    assert len(tier) == 1
    assert tier.lookup("p", "stored") is None
    assert tier.lookup("q", "other").matched_text == "other"  # type: ignore[union-attr]


def test_add_many_and_vectors(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=None, min_cosine=0.9)
    tier.add_many("p", ["stored", "other"], ["a", "b"])
    assert emb.calls == 1 and len(tier) == 2
    assert tier.lookup_vector("p", emb.table["other"]).key == "b"  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        tier.add_many("p", ["stored"], ["a", "b"])
    with pytest.raises(ConfigError):
        tier.add_vectors("p", ["x"], ["x"], np.zeros((1, 4), np.float32))


def test_threshold_validation(emb: TableEmbedder) -> None:
    with pytest.raises(ConfigError, match="min_cosine"):
        SemanticTier(emb, verifier=None, min_cosine=1.5)
    with pytest.raises(ConfigError, match="early_exit_cosine"):
        SemanticTier(emb, verifier=None, min_cosine=0.9, early_exit_cosine=0.8)
    SemanticTier(emb, verifier=None, min_cosine=0.9, early_exit_cosine=None)


def test_index_factory_is_used(emb: TableEmbedder) -> None:
    made: list[BruteForceIndex] = []

    def factory(dim: int) -> BruteForceIndex:
        made.append(BruteForceIndex(dim))
        return made[-1]

    tier = SemanticTier(emb, verifier=None, index_factory=factory)
    tier.add("p", "stored", "k")
    assert len(made) == 1 and len(made[0]) == 1


def test_default_embedder_end_to_end() -> None:
    tier = SemanticTier(min_cosine=0.8)
    assert tier.embedder is default_embedder()
    tier.add("chat|model", "How do I reset my password?", "key-1")
    tier.add("chat|model", "What's the weather in Paris tomorrow?", "key-2")
    m = tier.lookup("chat|model", "how do i reset my password")
    assert m is not None and m.key == "key-1" and m.similarity > 0.95
    assert tier.lookup("chat|model", "Recommend a good science fiction novel") is None
    assert tier.lookup("chat|other-model", "How do I reset my password?") is None


def test_concurrent_lookups_and_mutations() -> None:
    tier = SemanticTier(min_cosine=0.9)
    texts = [f"question number {i} about topic {i * 7}" for i in range(200)]
    tier.add_many("p", texts[:100], [f"k{i}" for i in range(100)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                m = tier.lookup("p", texts[3])
                assert m is not None and m.key == "k3"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(100, 200):
        tier.add("p", texts[i], f"k{i}")
        tier.remove(f"k{i - 50}")
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[0]
    assert len(tier) == 100


# ---- the verified path ---------------------------------------------------------------------------------


class ListVerifier(VerifierBase):
    """Accepts only the stored texts it is given; records every pair it was asked about."""

    def __init__(self, accept: set[str]) -> None:
        super().__init__()
        self.accept = accept
        self.asked: list[tuple[str, str, float]] = []

    def decide(self, query: str, candidate: str, similarity: float) -> Verdict:
        self.asked.append((query, candidate, similarity))
        return Verdict(candidate in self.accept, "ok" if candidate in self.accept else "listed")


def test_verifier_rejects_the_best_candidate_and_accepts_the_next(emb: TableEmbedder) -> None:
    v = ListVerifier({"edge"})
    tier = SemanticTier(emb, verifier=v, min_cosine=0.8, candidates=3)
    tier.add_many("p", ["close", "edge", "far"], ["k-close", "k-edge", "k-far"])
    m = tier.lookup("p", "stored")
    assert m is not None and m.key == "k-edge" and m.checked == 2
    assert m.verdict == Verdict(True, "ok")
    # best first, and "far" (cos 0.5) is below the floor: never shown to the verifier
    assert [c for _, c, _ in v.asked] == ["close", "edge"]
    assert v.asked[0][2] == pytest.approx(0.95, abs=1e-6)
    st = tier.stats()
    assert (st["lookups"], st["hits"], st["checks"], st["rejected"], st["candidates"]) == (1, 1, 2, 1, 2)
    assert v.stats()["checks"] == 2 and v.stats()["accepted"] == 1 and v.stats()["cost_us"] > 0


def test_verifier_never_runs_below_the_floor(emb: TableEmbedder) -> None:
    v = ListVerifier({"far"})
    tier = SemanticTier(emb, verifier=v, min_cosine=0.9)
    tier.add("p", "far", "k-far")
    assert tier.lookup("p", "stored") is None  # cos 0.5 < 0.9
    assert v.asked == [] and tier.stats()["checks"] == 0 and tier.stats()["misses"] == 1


def test_all_candidates_rejected_is_a_miss(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=ListVerifier(set()), min_cosine=0.8, candidates=4)
    tier.add_many("p", ["close", "edge"], ["a", "b"])
    assert tier.lookup("p", "stored") is None
    assert tier.stats()["rejected"] == 2 and tier.served().is_empty()


def test_lookup_vector_needs_the_text_for_verification(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=ListVerifier({"stored"}), min_cosine=0.9)
    tier.add("p", "stored", "k1")
    with pytest.raises(ConfigError, match="text"):
        tier.lookup_vector("p", emb.table["close"])
    m = tier.lookup_vector("p", emb.table["close"], text="close")
    assert m is not None and m.key == "k1"


def test_stats_frame_and_served_log(emb: TableEmbedder) -> None:
    tier = SemanticTier(emb, verifier=ListVerifier({"stored"}), min_cosine=0.9)
    tier.add("p", "stored", "k1")
    assert tier.lookup("p", "close") is not None
    assert tier.lookup("p", "far") is None
    assert tier.lookup("empty-partition", "close") is None
    f = tier.stats_frame()
    assert f["verifier"][0] == "ListVerifier" and f["embedder"][0] == "table"
    assert (f["lookups"][0], f["hits"][0], f["misses"][0], f["empty"][0]) == (3, 1, 2, 1)
    for col in ("embed_us", "search_us", "verify_us", "lookup_us", "lookup_us_p50", "lookup_us_p99"):
        assert f[col][0] >= 0, col
    served = tier.served()
    assert served.select("query", "matched", "key").rows() == [("close", "stored", "k1")]
    assert served["similarity"][0] == pytest.approx(0.95, abs=1e-6)


def test_default_configuration_rejects_one_word_traps_an_index_alone_serves() -> None:
    default = SemanticTier()
    assert default.config == {
        "embedder": default_embedder().name,
        "verifier": "trap-guard",
        "min_cosine": DEFAULT_MIN_COSINE,
    }
    index_only = SemanticTier(verifier=None)
    stored = ["Is the clinic open on Sundays?", "How do I turn on two-factor authentication?",
              "Cancel my subscription"]
    traps = ["Is the clinic closed on Sundays?", "How do I turn off two-factor authentication?",
             "Don't cancel my subscription"]
    for tier in (default, index_only):
        tier.add_many("p", stored, [f"k{i}" for i in range(3)])
    for text in traps:
        assert index_only.lookup("p", text) is not None, text  # cosine >= 0.95: the trap is real
        assert default.lookup("p", text) is None, text
    m = default.lookup("p", "is the clinic open on sundays")
    assert m is not None and m.key == "k0" and m.verdict is not None and m.verdict.accept
