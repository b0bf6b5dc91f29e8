"""Diversity-aware reranking: Maximal Marginal Relevance over the ANN candidates."""

from __future__ import annotations

from typing import Literal

import numpy as np


def mmr(
    relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float, redundancy: Literal["max", "mean"] = "max"
) -> list[int]:
    """Pick ``k`` indices greedily maximising ``lam * relevance - (1 - lam) * redundancy``
    with what is already picked. ``vectors`` are L2-normalised rows. Redundancy "max" is
    classic MMR (similarity to the closest pick); "mean" is the mean similarity to the
    picks, i.e. each pick's marginal effect on the list's ILD (mean pairwise distance), so
    the greedy list trades relevance against exactly the diversity that is reported."""
    n = len(relevance)
    if n == 0:
        return []
    chosen: list[int] = []
    redundant = np.zeros(n)  # each candidate's redundancy with the chosen set (none yet: 0)
    total = np.zeros(n)  # "mean": the summed similarities to the chosen
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        score = np.where(available, lam * relevance - (1 - lam) * redundant, -np.inf)
        best = int(np.argmax(score))
        # One row of similarities per pick (k x n), not the n x n matrix: on the request path
        # that matrix product was the reranker's largest cost.
        sims = vectors @ vectors[best]
        chosen.append(best)
        available[best] = False
        if redundancy == "mean":
            total += sims
            redundant = total / len(chosen)
        else:
            redundant = sims if len(chosen) == 1 else np.maximum(redundant, sims)
    return chosen


def intra_list_diversity(vectors: np.ndarray) -> float:
    """ILD: mean pairwise cosine distance of a list's (normalised) vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((1 - sims)[np.triu_indices(n, 1)].mean())
