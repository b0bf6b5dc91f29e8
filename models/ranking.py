"""The ranking stages after retrieval, one code path for serving and for evaluation:
top-100 candidates -> DeepFM scores -> self-attention reranker (or MMR) -> top-k."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from models.diversity import CandidateList, SelfAttentionReranker, select
from models.reranker import DeepFMReranker, ItemFeatures, UserFeatures
from models.user_tower import UserTower


@dataclass
class RankingModels:
    """The learned stages of one model version; any of them may be absent (an untrained
    version serves the plain sequence mean and MMR over the ANN scores)."""

    user_tower: UserTower | None = None
    deepfm: DeepFMReranker | None = None
    diversity: SelfAttentionReranker | None = None


@dataclass
class Candidates:
    """Retrieved items for one user: ``vectors`` (n, 128), ``ann`` (n,) retrieval scores,
    ``features`` the DeepFM item features, ``popularity`` interaction counts."""

    vectors: np.ndarray
    ann: np.ndarray
    features: list[ItemFeatures]
    popularity: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


def pair_dense(cands: Candidates, history: np.ndarray | None) -> np.ndarray:
    """The per-pair dense inputs: ann, max similarity to the history, count, known flag."""
    hist_sim = (cands.vectors @ history.T).max(1) if history is not None and len(history) else np.zeros(len(cands.ann))
    known = (cands.popularity > 0).astype(np.float32)
    return np.stack([cands.ann, hist_sim, cands.popularity, known], axis=1).astype(np.float32)


def deepfm_logits(
    model: DeepFMReranker, user: UserFeatures, cands: Candidates, history: np.ndarray | None
) -> np.ndarray:
    p = model.score(model.matrix([user] * len(cands.features), cands.features, pair_dense(cands, history)))
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def rank(
    models: RankingModels,
    user_vector: np.ndarray,
    user: UserFeatures,
    cands: Candidates,
    history: np.ndarray | None,
    k: int,
    lam: float,
    use_deepfm: bool = True,
    use_diversity: bool = True,
) -> list[int]:
    """Indices into ``cands`` of the final top-k. Stage timings go to ``cands.timings_ms``."""
    if not len(cands.ann):
        return []
    t0 = time.perf_counter()
    relevance = cands.ann
    if use_deepfm and models.deepfm is not None:
        relevance = deepfm_logits(models.deepfm, user, cands, history)
    t1 = time.perf_counter()
    cands.timings_ms["deepfm_ms"] = (t1 - t0) * 1000
    if not use_diversity:
        order = list(np.argsort(-relevance, kind="stable")[:k])
    else:
        if models.diversity is not None and use_deepfm and models.deepfm is not None:
            scores = np.stack([relevance, cands.ann], axis=1)
            relevance = models.diversity.score(CandidateList(user_vector, cands.vectors, scores))
        order = select(relevance, cands.vectors, k, lam)
    cands.timings_ms["diversity_ms"] = (time.perf_counter() - t1) * 1000
    return [int(i) for i in order]
