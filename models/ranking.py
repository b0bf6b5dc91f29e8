"""The ranking stages after retrieval, one code path for serving and for evaluation:
top-100 candidates -> DeepFM scores -> self-attention reranker (or MMR) -> top-k."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.cooccurrence import CoOccurrence
from models.diversity import CandidateList, SelfAttentionReranker, select
from models.reranker import DeepFMReranker, ItemFeatures, UserFeatures
from models.sasrec import SASRec
from models.user_tower import UserTower


@dataclass
class RankingModels:
    """The learned stages of one model version; any of them may be absent (an untrained
    version serves the plain sequence mean and MMR over the ANN scores)."""

    user_tower: UserTower | None = None
    deepfm: DeepFMReranker | None = None
    diversity: SelfAttentionReranker | None = None
    cooccurrence: CoOccurrence | None = None
    sasrec: SASRec | None = None


# Exploration policy: of the top-k, up to this many slots go to items with no known
# popularity (new products), the best of them by the final relevance score (content: DeepFM
# learnt to rank "unknown" rows by content). Without it the collaborative features rank
# every new item below the known ones and a new product is never shown, so never learnt.
EXPLORE_SLOTS = 1


@dataclass
class Candidates:
    """Retrieved items for one user: ``vectors`` (n, 128), ``ann`` (n,) retrieval scores,
    ``features`` the DeepFM item features, ``popularity`` interaction counts, ``cooc``
    (n, 2) co-occurrence score with the history and its known flag
    (``CoOccurrence.features``; None = no co-occurrence component: all unknown), ``seq``
    (n, 2) the SASRec next-item score and its known flag (``SASRec.features``; None = no
    SASRec component: all unknown)."""

    vectors: np.ndarray
    ann: np.ndarray
    features: list[ItemFeatures]
    popularity: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    cooc: np.ndarray | None = None
    seq: np.ndarray | None = None


def pair_dense(cands: Candidates, history: np.ndarray | None) -> np.ndarray:
    """The per-pair dense inputs: ann, max similarity to the history, count, known flag,
    co-occurrence score, that score over the list's best (a user's scores scale with how
    much their history co-occurs at all), co-occurrence known flag, the SASRec score as a
    z-score among the list's known items (a score's scale is the model's, not the item's:
    the model that serves and the one DeepFM trained beside differ), SASRec known flag."""
    n = len(cands.ann)
    hist_sim = (cands.vectors @ history.T).max(1) if history is not None and len(history) else np.zeros(n)
    known = (cands.popularity > 0).astype(np.float32)
    cooc = cands.cooc if cands.cooc is not None else np.zeros((n, 2), np.float32)
    best = cooc[:, 0].max(initial=0.0)
    rel = cooc[:, 0] / best if best > 0 else np.zeros(n, np.float32)
    seq = cands.seq if cands.seq is not None else np.zeros((n, 2), np.float32)
    columns = [cands.ann, hist_sim, cands.popularity, known, cooc[:, 0], rel, cooc[:, 1], _z_known(*seq.T), seq[:, 1]]
    return np.stack(columns, axis=1).astype(np.float32)


def _z_known(scores: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``scores`` z-scored over the ``known`` rows; 0 for the others (and for all when
    fewer than two are known: no spread to scale by)."""
    mask = known > 0
    if mask.sum() < 2:
        return np.zeros(len(scores), np.float32)
    std = float(scores[mask].std()) or 1.0
    return np.where(mask, (scores - scores[mask].mean()) / std, 0.0).astype(np.float32)


def explore(order: list[int], relevance: np.ndarray, unknown: np.ndarray, k: int, slots: int) -> list[int]:
    """``order`` with up to ``slots`` of its ``k`` places held by ``unknown`` candidates:
    the best unknown ones not picked yet replace the last known picks, at the end."""
    missing = slots - int(sum(bool(unknown[i]) for i in order))
    if missing <= 0:
        return order
    picked = set(order)
    extra = [int(i) for i in np.argsort(-relevance, kind="stable") if unknown[i] and int(i) not in picked][:missing]
    known = [i for i in order if not unknown[i]]
    overflow = min(len(order) + len(extra) - k, len(known))
    drop = set(known[len(known) - overflow :]) if overflow > 0 else set()
    return ([i for i in order if i not in drop] + extra)[:k]


def deepfm_logits(model: DeepFMReranker, user: UserFeatures, cands: Candidates, dense: np.ndarray) -> np.ndarray:
    """DeepFM's logit per candidate; ``dense`` = ``pair_dense(cands, history)``."""
    return deepfm_logits_many(model, [(user, cands, dense)])[0]


def deepfm_logits_many(
    model: DeepFMReranker, lists: Sequence[tuple[UserFeatures, Candidates, np.ndarray]]
) -> list[np.ndarray]:
    """``deepfm_logits`` of several users' lists in one forward (the rows stacked)."""
    users = [user for user, cands, _ in lists for _ in cands.features]
    items = [f for _, cands, _ in lists for f in cands.features]
    dense = np.concatenate([d for _, _, d in lists])
    p = np.clip(model.score(model.matrix(users, items, dense)), 1e-6, 1 - 1e-6)
    logits = np.log(p / (1 - p))
    return np.split(logits, np.cumsum([len(c.features) for _, c, _ in lists])[:-1])


def list_scores(model: DeepFMReranker, logits: np.ndarray, dense: np.ndarray, width: int) -> np.ndarray:
    """The self-attention reranker's per-candidate scalars: the DeepFM logit, then (width
    10) the pair inputs DeepFM saw, scaled as DeepFM scales them (``pair_inputs``), so the
    listwise stage can weigh co-occurrence, SASRec and popularity itself; width 8
    (versions trained before SASRec) stops before the SASRec columns, width 2 (before
    any pair inputs) = logit and retrieval score only."""
    pair = model.pair_inputs(dense)
    return np.concatenate([logits[:, None], pair[:, : width - 1]], axis=1).astype(np.float32)


@dataclass
class RankInput:
    """One list to rank: the user's vector and features, the candidates, the history's
    vectors (None: no history), the list length, λ and the exploration slots."""

    user_vector: np.ndarray
    user: UserFeatures
    cands: Candidates
    history: np.ndarray | None
    k: int
    lam: float
    explore_slots: int = EXPLORE_SLOTS


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
    explore_slots: int = EXPLORE_SLOTS,
) -> list[int]:
    """Indices into ``cands`` of the final top-k (``explore_slots``: see ``EXPLORE_SLOTS``).
    Stage timings go to ``cands.timings_ms``."""
    one = RankInput(user_vector, user, cands, history, k, lam, explore_slots)
    return rank_many(models, [one], use_deepfm, use_diversity)[0]


def rank_many(
    models: RankingModels, inputs: Sequence[RankInput], use_deepfm: bool = True, use_diversity: bool = True
) -> list[list[int]]:
    """``rank`` for several lists at once: one DeepFM forward and one self-attention forward
    for all of them (the worker's micro-batches, ``streams.batching``); the same numbers as
    ranking each alone, up to float rounding. Stage timings (of the whole batch) go to each
    list's ``cands.timings_ms``."""
    t0 = time.perf_counter()
    live = [x for x in inputs if len(x.cands.ann)]
    relevance = [x.cands.ann for x in live]
    dense: list[np.ndarray] | None = None  # the pair inputs: only DeepFM and the self-attention reranker read them
    if use_deepfm and models.deepfm is not None and live:
        dense = [pair_dense(x.cands, x.history) for x in live]
        relevance = deepfm_logits_many(models.deepfm, [(x.user, x.cands, d) for x, d in zip(live, dense, strict=True)])
    t1 = time.perf_counter()
    redundancy: Literal["max", "mean"] = "max"  # no self-attention model: classic MMR
    if use_diversity and models.diversity is not None and models.deepfm is not None and dense is not None:
        width = models.diversity.cfg.scores
        lists = [
            CandidateList(x.user_vector, x.cands.vectors, list_scores(models.deepfm, r, d, width))
            for x, r, d in zip(live, relevance, dense, strict=True)
        ]
        relevance = models.diversity.score_many(lists)
        redundancy = "mean"
    orders = iter([_select(x, r, use_diversity, redundancy) for x, r in zip(live, relevance, strict=True)])
    t2 = time.perf_counter()
    for x in live:
        x.cands.timings_ms["deepfm_ms"] = (t1 - t0) * 1000
        x.cands.timings_ms["diversity_ms"] = (t2 - t1) * 1000
    return [next(orders) if len(x.cands.ann) else [] for x in inputs]  # ``live`` is ``inputs`` in order


def _select(x: RankInput, relevance: np.ndarray, diversify: bool, redundancy: Literal["max", "mean"]) -> list[int]:
    """One list's top-k: diversified selection (or the relevance order), then exploration."""
    if diversify:
        order = [int(i) for i in select(relevance, x.cands.vectors, x.k, x.lam, redundancy)]
    else:
        order = [int(i) for i in np.argsort(-relevance, kind="stable")[: x.k]]
    return [int(i) for i in explore(order, relevance, x.cands.popularity <= 0, x.k, x.explore_slots)]
