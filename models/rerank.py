"""Diversity-aware reranking: Maximal Marginal Relevance over the ANN candidates."""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Pick ``k`` indices greedily maximising ``lam * relevance - (1 - lam) * max
    similarity to what is already picked``. ``vectors`` are L2-normalised rows."""
    n = len(relevance)
    if n == 0:
        return []
    sims = vectors @ vectors.T
    chosen: list[int] = []
    closest = np.full(n, -np.inf)  # max similarity of each candidate to the chosen set
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        score = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        closest = np.maximum(closest, sims[best])
    return chosen


def intra_list_diversity(vectors: np.ndarray) -> float:
    """ILD: mean pairwise cosine distance of a list's (normalised) vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((1 - sims)[np.triu_indices(n, 1)].mean())
