"""Embedding quality metrics used by training reports and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
