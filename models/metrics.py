"""Embedding quality metrics used by training reports and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.rerank import intra_list_diversity


def purity_at_k(vectors: np.ndarray, labels: Sequence[str], k: int = 10, queries: np.ndarray | None = None) -> float:
    """Mean share of each item's k nearest neighbours (cosine, itself excluded) that share
    its label. ``queries`` (indices) restricts which items ask; all items are candidates."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    labels_arr = np.asarray(labels)
    ask = np.arange(len(v)) if queries is None else np.asarray(queries)
    sims = v[ask] @ v.T
    sims[np.arange(len(ask)), ask] = -np.inf
    top = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1) - 1, axis=1)[:, :k]
    return float((labels_arr[top] == labels_arr[ask][:, None]).mean())


# --- ranking metrics (bench/eval). ``ranked`` is (n, K) product ids, best first; -1 pads
# a list a ranker could not fill. Each test case has one relevant item, its target. ---


def _hit_ranks(ranked: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """0-based rank of each target within the top-k, or -1 when it is not there."""
    top = np.asarray(ranked)[:, :k]
    hits = top == np.asarray(targets)[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def recall_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of cases whose target is in the top-k (= hit rate: one relevant item each)."""
    if len(targets) == 0:
        return float("nan")
    return float((_hit_ranks(ranked, targets, k) >= 0).mean())


def ndcg_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """With one relevant item the ideal DCG is 1, so NDCG = 1 / log2(rank + 2) at a hit."""
    if len(targets) == 0:
        return float("nan")
    ranks = _hit_ranks(ranked, targets, k)
    gains = np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2), 0.0)
    return float(gains.mean())


def hits_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """1.0 per case whose target is in the top-k, else 0.0 (``recall_at_k`` is its mean)."""
    return (_hit_ranks(ranked, targets, k) >= 0).astype(np.float64)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same cases and its 95% bootstrap interval (cases
    resampled with replacement, the same resample for both): whether one ranker beats
    another on this test set, or only by the luck of a few cases."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def catalog_coverage(ranked: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalog's ``n_items`` that appear in at least one top-k list."""
    top = np.asarray(ranked)[:, :k]
    return float(len(np.setdiff1d(np.unique(top), [-1])) / n_items) if n_items else float("nan")


VectorTable = dict[int, np.ndarray] | tuple[dict[int, int], np.ndarray]


def _rows(ids: np.ndarray, vectors: VectorTable) -> np.ndarray:
    """The L2-normalised vectors of the ids that have one (others are skipped)."""
    if isinstance(vectors, tuple):
        index, matrix = vectors
        picked = [matrix[index[int(i)]] for i in ids if int(i) in index]
    else:
        picked = [vectors[int(i)] for i in ids if int(i) in vectors]
    if not picked:
        return np.zeros((0, 1))
    arr = np.asarray(picked, dtype=np.float64)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True).clip(1e-12)


def mean_ild(ranked: np.ndarray, k: int, vectors: VectorTable) -> float:
    """Mean intra-list diversity (mean pairwise cosine distance) of the top-k lists, with
    one vector table for every ranker so the numbers compare across rankers."""
    lists = [_rows(row[:k], vectors) for row in np.asarray(ranked)]
    scores = [intra_list_diversity(v) for v in lists if len(v) >= 2]
    return float(np.mean(scores)) if scores else float("nan")
