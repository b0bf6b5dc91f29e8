"""User vector for the walking skeleton: a recency-weighted mean of the frozen item
vectors of the user's sequence (the learned user tower replaces this later)."""

from __future__ import annotations

import numpy as np

KIND_WEIGHT = {"click": 1.0, "cart": 2.0, "purchase": 3.0}


def sequence_vector(vectors: np.ndarray, weights: np.ndarray | None = None, half_life: float = 10.0) -> np.ndarray:
    """``vectors`` oldest -> newest (n, d). The newest item weighs most; an item
    ``half_life`` steps older weighs half as much."""
    n = vectors.shape[0]
    recency = 0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float64) / half_life)
    w = recency * (weights if weights is not None else 1.0)
    mean = (vectors * w[:, None]).sum(0) / w.sum()
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
