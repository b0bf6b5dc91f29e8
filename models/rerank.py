"""Diversity-aware reranking: Maximal Marginal Relevance over the ANN candidates."""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Pick ``k`` indices greedily maximising ``lam * relevance - (1 - lam) * max
    similarity to what is already picked``. ``vectors`` are L2-normalised rows."""
    n = len(relevance)
    if n == 0:
        return []
    chosen: list[int] = []
    closest = np.zeros(n)  # max similarity of each candidate to the chosen set (none yet: 0)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        score = np.where(available, lam * relevance - (1 - lam) * closest, -np.inf)
        best = int(np.argmax(score))
        # One row of similarities per pick (k x n), not the n x n matrix: on the request path
        # that matrix product was the reranker's largest cost.
        sims = vectors @ vectors[best]
        closest = sims if not chosen else np.maximum(closest, sims)
        chosen.append(best)
        available[best] = False
    return chosen


def intra_list_diversity(vectors: np.ndarray) -> float:
    """ILD: mean pairwise cosine distance of a list's (normalised) vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((1 - sims)[np.triu_indices(n, 1)].mean())
