"""Deterministic output text and embeddings. Pure functions, no I/O.

Text: a seeded word stream, so the same (seed, model, prompt) always gives the same answer and different
prompts give different answers. A "token" is one word; every token after the first carries its leading
space, as BPE tokenizers do, so joining the pieces gives the text.

Embeddings: feature hashing of words and character trigrams into `dim` buckets with a sign hash, then L2
normalisation. Texts that share words share buckets, so paraphrases score higher than unrelated text; no
model is needed, and the result is identical on every machine (crc32, not Python's salted `hash`).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import zlib
from collections.abc import Sequence

__all__ = ["TokenStream", "count_tokens", "embed", "embed_many", "output_length", "rng_for", "token_pieces"]

_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an have not which one "
    "stream token latency cache model server client chunk request response buffer socket thread queue "
    "signal window widget frame metric sample median percentile throughput budget network packet "
    "measure compare result notebook kernel event parser decoder encoder vector index batch prompt "
    "answer question system simple quick careful steady bright quiet early later first second final "
    "small large fast slow warm cold open close start finish build check improve reduce increase "
    "because while where when after before during between across within without through around "
    "value number string list table chart column row field record shape format protocol header body"
).split()
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def count_tokens(text: str) -> int:
    """Honest-ish token count: whitespace-separated words."""
    return len(text.split())


def _digest(*parts: object) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def rng_for(*parts: object) -> random.Random:
    return random.Random(_digest(*parts))


def output_length(seed: int, model: str, prompt: str, lo: int, hi: int) -> int:
    return lo + _digest("len", seed, model, prompt) % (hi - lo + 1)


class TokenStream:
    """The answer's tokens, generated on demand: a stream starts without building a long text first.

    Any split of `take` calls yields the same tokens (each word consumes one draw of its own generator),
    so a shorter answer is a prefix of a longer one, as with greedy decoding.
    """

    def __init__(self, seed: int, model: str, prompt: str, n: int) -> None:
        self.n = n
        self._i = 0
        self._words = rng_for("text", seed, model, prompt)
        self._stops = rng_for("stops", seed, model, prompt)
        self._until_stop = self._stops.randint(6, 14)
        self._start = True

    @property
    def remaining(self) -> int:
        return self.n - self._i

    def take(self, k: int) -> list[str]:
        """The next k tokens (fewer at the end): sentences of 6-14 words, capitalised, ending with '.'."""
        k = max(0, min(k, self.n - self._i))
        out: list[str] = []
        last = self.n - 1
        for w in self._words.choices(_WORDS, k=k):
            if self._start:
                w = w.capitalize()
                self._start = False
            self._until_stop -= 1
            if self._until_stop == 0 or self._i == last:
                w += "."
                self._start = True
                self._until_stop = self._stops.randint(6, 14)
            out.append(w if self._i == 0 else " " + w)
            self._i += 1
        return out

    def take_chunks(self, m: int, tokens_per_chunk: int) -> list[str]:
        toks = self.take(m * tokens_per_chunk)
        if tokens_per_chunk == 1:
            return toks
        return ["".join(toks[i : i + tokens_per_chunk]) for i in range(0, len(toks), tokens_per_chunk)]


def token_pieces(seed: int, model: str, prompt: str, n: int) -> list[str]:
    """All n word tokens at once; every token after the first carries its leading space."""
    return TokenStream(seed, model, prompt, n).take(n)


def _features(text: str) -> list[str]:
    words = _WORD_RE.findall(text.lower())
    feats = [f"w:{w}" for w in words]
    for w in words:
        padded = f"#{w}#"
        feats.extend(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    return feats


def embed(text: str, dim: int) -> list[float]:
    """L2-normalised hashed bag of words + char trigrams (words weigh 2, trigrams 1)."""
    vec = [0.0] * dim
    for f in _features(text):
        h = zlib.crc32(f.encode("utf-8", "surrogatepass"))
        weight = 2.0 if f[0] == "w" else 1.0
        vec[h % dim] += weight if (h >> 31) & 1 == 0 else -weight
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        # Empty text: a fixed unit vector, so cosine similarity stays defined.
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


def embed_many(texts: Sequence[str], dim: int) -> list[list[float]]:
    return [embed(t, dim) for t in texts]
