"""Deterministic text and embeddings (pure functions)."""

from __future__ import annotations

import math

from workbench.simulator.text import count_tokens, embed, output_length, token_pieces


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_unit_length_deterministic_dim() -> None:
    v = embed("How do I reset my password?", 384)
    assert len(v) == 384
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9)
    assert v == embed("How do I reset my password?", 384)
    assert len(embed("", 64)) == 64 and math.isclose(sum(x * x for x in embed("", 64)), 1.0)


def test_paraphrases_score_higher_than_unrelated() -> None:
    q = embed("How do I reset my password?", 384)
    para = embed("how can I reset the password", 384)
    unrelated = embed("The weather in Lisbon is sunny today", 384)
    assert _cos(q, para) > 0.5
    assert _cos(q, para) > _cos(q, unrelated) + 0.3


def test_token_pieces_join_to_space_separated_words() -> None:
    pieces = token_pieces(0, "sim-small", "hi", 30)
    assert len(pieces) == 30
    assert not pieces[0].startswith(" ") and all(p.startswith(" ") for p in pieces[1:])
    text = "".join(pieces)
    assert count_tokens(text) == 30 and text.endswith(".")
    assert token_pieces(0, "sim-small", "hi", 30) == pieces
    assert token_pieces(0, "sim-large", "hi", 30) != pieces
    assert token_pieces(0, "sim-small", "hi", 10) == [*pieces[:9], pieces[9].rstrip(".") + "."]


def test_output_length_range() -> None:
    lengths = {output_length(0, "m", f"prompt {i}", 48, 160) for i in range(200)}
    assert min(lengths) >= 48 and max(lengths) <= 160 and len(lengths) > 50


def test_token_stream_any_split_gives_the_same_tokens() -> None:
    from workbench.simulator.text import TokenStream

    whole = token_pieces(5, "m", "p", 100)
    ts = TokenStream(5, "m", "p", 100)
    parts = ts.take(1) + ts.take(7) + ts.take_chunks(10, 3) + ts.take(1000)
    assert parts[:8] == whole[:8] and parts[8] == "".join(whole[8:11])
    assert "".join(parts) == "".join(whole) and ts.remaining == 0
