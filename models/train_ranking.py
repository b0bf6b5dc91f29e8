"""Training of everything after the item tower, in order, on one interaction log:

1. user tower on next-item examples (item vectors frozen);
2. impressions: for the last few prefixes of each training user, the candidates serving
   would have shown (history excluded): the user tower's exact top (content), the items
   co-occurring with the history (``models.cooccurrence``, fitted here and shipped) and
   popular ones; the next item is the positive, the other candidates the (hard) negatives.
   Counts and co-occurrences leave the user's own interactions out: at serving time a
   candidate's counts never include the request's own future click;
   SASRec's next-item score is a DeepFM input too; each impression reads it from a SASRec
   fitted on the other half of the users (cross-fitting, as in step 4: SASRec scores its
   own training transitions far better than unseen ones, MovieLens: the target in the top
   10 of 65% of the lists vs 38% of the test pools; the other half's model: 40%). The
   SASRec that ships is fitted on every user;
3. DeepFM on those impressions (by default a softmax over each impression's rows: the
   clicked one against its negatives), its STD/RE tables transferred from the item tower; a share
   of the rows is shown as a new item (popularity, co-occurrence, SASRec unknown), so DeepFM
   learns to rank new items by content;
4. the self-attention reranker on every user's lists, scored by a DeepFM fitted on the
   other half of the users (cross-fitting: DeepFM's scores on its own training rows would
   be over-confident); the DeepFM that serves is fitted on all of them.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from tqdm import tqdm

from models.cooccurrence import CoOccurrence
from models.diversity import CandidateList, DiversityHistory, train_diversity
from models.encoder import ItemContent, ItemEncoder, ItemInput
from models.ranking import Candidates, RankingModels, deepfm_logits, list_scores, pair_dense
from models.reranker import (
    PAIR,
    DeepFMReranker,
    ItemFeatures,
    RerankerConfig,
    UserFeatures,
    item_features,
    user_features,
)
from models.sasrec import SASRec, SASRecConfig
from models.train_user import Step, UserTrainConfig, UserTrainHistory, state_of, train_user_tower
from models.user_tower import UserTower

# The self-attention reranker's scalars per candidate: the DeepFM logit + its pair inputs.
LIST_SCORES = 1 + len(PAIR)
# Below this many retrieved-target impressions (a small log), the missed ones are kept too.
MIN_IMPRESSIONS = 200


class RankingTrainConfig(BaseModel):
    user: UserTrainConfig = UserTrainConfig()
    candidates: int = 100
    # Of the candidates, how many come from popularity, from co-occurrence with the history
    # and from SASRec's best next items; the rest (40) from content retrieval, which alone
    # reaches new items. MovieLens (README, "Recommendation quality"): SASRec's 20 places
    # lift the pool's recall from 27% to 32%; taken from popularity (whose items the two
    # collaborative sources favour anyway) they keep content's places for cold items.
    popular_candidates: int = 10
    cooc_candidates: int = 30
    sasrec_candidates: int = 20
    cooc_neighbours: int = 100  # neighbours kept per item in the shipped table
    # The SASRec component (None: a version without it). MovieLens, the pool ordered by
    # DeepFM alone vs fused with SASRec's order: Recall@10 0.085 vs 0.101-0.111.
    sasrec: SASRecConfig | None = SASRecConfig()
    # ... left out when a half of the users holds fewer transitions (a short log): DeepFM
    # would learn little about the score, then be served it.
    sasrec_min_transitions: int = 200
    # Rows shown as a new item in DeepFM training (popularity, co-occurrence, SASRec unknown).
    pop_unknown_rate: float = 0.25
    impressions_per_user: int = 10
    # Train on impressions whose clicked item no source retrieved (it is then added to the
    # list). Off: such a positive looks like nothing retrieval ranks high, and most of them
    # would teach DeepFM that its best signals (co-occurrence, ANN) do not matter, while
    # serving only ever ranks retrieved candidates.
    missed_targets: bool = False
    negatives: int = 24
    deepfm_epochs: int = 4
    deepfm_batch: int = 512
    # 3e-3: at 1e-3 four epochs of a few thousand impressions left the loss near the
    # constant predictor's (DeepFM ranked below its own co-occurrence input).
    deepfm_lr: float = 3e-3
    # "listwise": softmax cross-entropy of the clicked row against the rest of its
    # impression (the order within one list is what ranking needs; MovieLens, 3 seeds:
    # Recall@10 +0.005 for DeepFM, +0.008 after the self-attention stage at λ=0.8);
    # "pointwise": binary cross-entropy per row, as before. Listwise scores rank, they are
    # not click probabilities.
    deepfm_loss: Literal["pointwise", "listwise"] = "listwise"
    diversity_epochs: int = 6
    seed: int = 0


class RankingReport(BaseModel):
    user_tower: UserTrainHistory
    deepfm_loss: list[float]
    deepfm_objective: Literal["pointwise", "listwise"] = "pointwise"  # what deepfm_loss measures
    diversity: DiversityHistory
    sasrec_loss: list[float] = []  # the shipped SASRec's per epoch (sampled softmax CE); [] without one
    impressions: int
    lists: int
    transferred_rows: dict[str, int]
    seconds: float


@dataclass
class Catalog:
    """The items the models rank, as aligned arrays (row i = ``ids[i]``)."""

    ids: np.ndarray
    vectors: np.ndarray
    features: list[ItemFeatures]
    row: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row = {int(p): i for i, p in enumerate(self.ids)}

    def vector_map(self) -> dict[int, np.ndarray]:
        return {int(p): self.vectors[i] for i, p in enumerate(self.ids)}


def category_queries(encoder: ItemEncoder, items: Sequence[ItemInput]) -> dict[str, np.ndarray]:
    """One pseudo item per fine category ("coat"): what a typed query looks like to the tower."""
    cats = sorted({(it.coarse, it.fine) for it in items})
    queries = [ItemContent(f, {"category": [f"{c}/{f}"]}, {}, c, f) for c, f in cats]
    vecs = encoder.encode(queries)
    return {f: vecs[i] for i, (_, f) in enumerate(cats)}


def build_catalog(encoder: ItemEncoder, items: Sequence[ItemInput], prices: dict[int, float]) -> Catalog:
    ids = np.array([it.product_id for it in items])  # type: ignore[attr-defined]
    vectors = np.concatenate([encoder.encode(items[i : i + 512]) for i in range(0, len(items), 512)])
    feats = [item_features(encoder, it, prices.get(int(p))) for it, p in zip(items, ids, strict=True)]
    return Catalog(ids, vectors, feats)


def exact_top(user_vecs: np.ndarray, catalog: Catalog, exclude: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Exact inner-product top-n catalog rows per user; -1 where fewer than n items are
    left once the excluded product ids (the history) are taken out."""
    scores = user_vecs @ catalog.vectors.T
    for i, ids in enumerate(exclude):
        rows = [catalog.row[p] for p in ids if p in catalog.row]
        scores[i, rows] = -np.inf
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.take_along_axis(scores, top, 1).argsort(1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, 1)), top, -1)


def _profile_features(tower: UserTower, profiles: dict[str, dict[str, float | None]], user: str) -> list[float]:
    return tower.cfg.profile.features(profiles.get(user))


def merge_sources(sources: Sequence[tuple[Sequence[int], int]], exclude: set[int], n: int) -> list[int]:
    """The candidate set from several ranked sources of catalog rows: each source's best
    rows up to its quota, in source order, no repeats, none of ``exclude``; then, while
    short of ``n`` (a source ran dry), the sources' further rows in the same order."""
    out: list[int] = []
    taken = set(exclude)

    def take(rows: Sequence[int], quota: int) -> None:
        for r in rows:
            if quota <= 0 or len(out) >= n:
                return
            if r >= 0 and int(r) not in taken:
                out.append(int(r))
                taken.add(int(r))
                quota -= 1

    for rows, quota in sources:
        take(rows, quota)
    for rows, _ in sources:
        take(rows, n)
    return out


def candidate_rows(
    ann_rows: Sequence[int],
    cooc_ids: Sequence[int],
    popular_rows: Sequence[int],
    catalog: Catalog,
    exclude: set[int],
    cfg: RankingTrainConfig,
    sasrec_ids: Sequence[int] = (),
) -> list[int]:
    """Content (ANN) + co-occurrence + SASRec + popular candidates, ``cfg.candidates`` in all."""
    n_ann = cfg.candidates - cfg.popular_candidates - cfg.cooc_candidates - cfg.sasrec_candidates
    cooc_rows = [catalog.row[p] for p in cooc_ids if p in catalog.row]
    sasrec_rows = [catalog.row[p] for p in sasrec_ids if p in catalog.row]
    sources = [
        (ann_rows, n_ann),
        (cooc_rows, cfg.cooc_candidates),
        (sasrec_rows, cfg.sasrec_candidates),
        (popular_rows, cfg.popular_candidates),
    ]
    return merge_sources(sources, exclude, cfg.candidates)


def _impressions(
    tower: UserTower,
    catalog: Catalog,
    sequences: dict[str, list[Step]],
    profiles: dict[str, dict[str, float | None]],
    popularity: Counter[int],
    cooc: CoOccurrence,
    cfg: RankingTrainConfig,
    sasrec: Sequence[SASRec] | None = None,
) -> list[tuple[str, Candidates, int, np.ndarray, np.ndarray, list[float], list[ItemFeatures]]]:
    """(user, candidates, target index, user vector, history vectors, profile, history features);
    ``sasrec``: the two cross-fitted SASRecs, index = the half (``half_of``) they score."""
    vecs = catalog.vector_map()
    popular = [catalog.row[p] for p, _ in popularity.most_common(cfg.popular_candidates + 60) if p in catalog.row]
    counts = np.array([popularity[int(p)] for p in catalog.ids], dtype=np.float32)
    out = []
    for user, seq in tqdm(sorted(sequences.items()), desc="impressions", leave=False):
        positions = [t for t in range(1, len(seq)) if seq[t].product_id in catalog.row][-cfg.impressions_per_user :]
        if not positions:
            continue
        states = [state_of(seq[max(0, t - 50) : t], vecs, seq[t - 1].ts, profiles.get(user)) for t in positions]
        uvecs = tower.encode(states)
        seen = [[s.product_id for s in seq[:t]] for t in positions]
        tops = exact_top(uvecs, catalog, seen, cfg.candidates)
        own = Counter(s.product_id for s in seq)  # this user's interactions, left out below
        model = sasrec[half_of(user)] if sasrec is not None else None
        next_scores = model.scores(seen) if model is not None else None
        for j, t in enumerate(positions):
            hist_rows = [catalog.row[p] for p in seen[j] if p in catalog.row]
            scores = cooc.scores(seen[j], own)  # once: the candidates and their features read it
            cooc_ids = cooc.candidates(seen[j], cfg.cooc_candidates + 20, set(seen[j]), own, scores)
            sasrec_ids = []
            if model is not None and next_scores is not None:
                sasrec_ids = model.candidates(next_scores[j], cfg.sasrec_candidates + 20, set(seen[j]))
            rows = candidate_rows(tops[j], cooc_ids, popular, catalog, set(hist_rows), cfg, sasrec_ids)
            target = catalog.row[seq[t].product_id]
            if target not in rows and not cfg.missed_targets:
                continue
            if target not in rows:  # the clicked item is an impression even if retrieval missed it
                rows = [*rows[: cfg.candidates - 1], target]
            ids = [int(catalog.ids[r]) for r in rows]
            cands = Candidates(
                vectors=catalog.vectors[rows],
                ann=catalog.vectors[rows] @ uvecs[j],
                features=[catalog.features[r] for r in rows],
                popularity=counts[rows] - np.array([own[p] for p in ids], dtype=np.float32),
                cooc=cooc.features(seen[j], ids, own, scores),
                seq=model.features(next_scores[j], ids) if model is not None and next_scores is not None else None,
            )
            out.append(
                (
                    user,
                    cands,
                    rows.index(target),
                    uvecs[j],
                    catalog.vectors[hist_rows],
                    _profile_features(tower, profiles, user),
                    [catalog.features[r] for r in hist_rows],
                )
            )
    return out


def _cooc_scale(impressions: Sequence[tuple[str, Candidates, int, Any, Any, Any, Any]]) -> float:
    """1 / the mean co-occurrence score of the training candidates that have one."""
    scores = np.concatenate([c.cooc[:, 0] for _, c, *_ in impressions if c.cooc is not None] or [np.zeros(0)])
    positive = scores[scores > 0]
    return float(1.0 / positive.mean()) if len(positive) else 1.0


Impression = tuple[np.ndarray, np.ndarray]  # one list's DeepFM rows (x) and labels (y)


def _train_deepfm(model: DeepFMReranker, rows: Sequence[Impression], cfg: RankingTrainConfig) -> list[float]:
    """Fits ``model`` on impressions, each (x, y): its rows and labels (one clicked row);
    returns the mean loss per epoch (``cfg.deepfm_loss`` says which loss)."""
    net = model.model
    opt = torch.optim.Adam(net.parameters(), lr=cfg.deepfm_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    listwise = cfg.deepfm_loss == "listwise"
    if listwise:  # one impression = one softmax over its rows, padded to the longest
        xt, mask, target = _padded(rows)
        step = max(1, cfg.deepfm_batch // xt.shape[1])  # about deepfm_batch rows per step
    else:
        xt = torch.from_numpy(np.concatenate([x for x, _ in rows]))
        yt = torch.from_numpy(np.concatenate([y for _, y in rows]).astype(np.float32))
        step = cfg.deepfm_batch
    losses = []
    for epoch in range(cfg.deepfm_epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = []
        for lo in tqdm(range(0, len(xt), step), desc=f"DeepFM {epoch + 1}", leave=False):
            idx = perm[lo : lo + step]
            if listwise:
                batch = xt[idx]
                b, g, d = batch.shape
                p = net(batch.reshape(b * g, d)).reshape(b, g)
                logits = torch.logit(p, eps=1e-7).masked_fill(~mask[idx], float("-inf"))
                loss = F.cross_entropy(logits, target[idx])
            else:
                loss = F.binary_cross_entropy(net(xt[idx]).squeeze(-1), yt[idx])
            loss = loss + net.get_regularization_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total.append(float(loss.item()))
        losses.append(float(np.mean(total)))
    net.eval()
    return losses


def _padded(rows: Sequence[Impression]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Impressions as (n, g, d) rows padded with copies of their first row, (n, g) a mask of
    the real rows, (n,) the clicked row's index."""
    g = max(len(y) for _, y in rows)
    xs = [np.concatenate([x, np.repeat(x[:1], g - len(x), axis=0)]) for x, _ in rows]
    mask = [np.arange(g) < len(y) for _, y in rows]
    target = [int(np.argmax(y)) for _, y in rows]
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(mask)), torch.tensor(target)


def _shown_as_new(dense: np.ndarray, rng: random.Random, cfg: RankingTrainConfig) -> np.ndarray:
    """``pair_dense`` rows with a ``cfg.pop_unknown_rate`` share shown as a brand-new product:
    popularity, co-occurrence and SASRec unknown (columns 2-8 zero)."""
    unknown = np.array([rng.random() < cfg.pop_unknown_rate for _ in range(len(dense))])
    dense[unknown, 2:] = 0.0
    return dense


def _deepfm_rows(
    deepfm: DeepFMReranker,
    cands: Candidates,
    target: int,
    history: np.ndarray,
    user: UserFeatures,
    rng: random.Random,
    cfg: RankingTrainConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """One impression's DeepFM rows (x, y): the clicked candidate and ``cfg.negatives``
    others; a share of them shown as a new item (popularity and co-occurrence unknown)."""
    negatives = [i for i in range(len(cands.ann)) if i != target]
    keep = [target, *rng.sample(negatives, min(cfg.negatives, len(negatives)))]
    dense = _shown_as_new(pair_dense(cands, history)[keep], rng, cfg)
    x = deepfm.matrix([user] * len(keep), [cands.features[i] for i in keep], dense)
    return x, np.array([1.0] + [0.0] * (len(keep) - 1))


def _candidate_list(
    deepfm: DeepFMReranker,
    cands: Candidates,
    target: int,
    user_vec: np.ndarray,
    history: np.ndarray,
    user: UserFeatures,
    rng: random.Random,
    cfg: RankingTrainConfig,
) -> CandidateList:
    """One training list of the self-attention reranker. As in DeepFM's rows, a share of the
    candidates is shown as a new item (popularity and co-occurrence unknown, to DeepFM too),
    so the listwise stage does not learn "unknown = never clicked" and bury new products."""
    dense = _shown_as_new(pair_dense(cands, history), rng, cfg)
    logits = deepfm_logits(deepfm, user, cands, dense)
    return CandidateList(user_vec, cands.vectors, list_scores(deepfm, logits, dense, LIST_SCORES), target)


def train_ranking(
    encoder: ItemEncoder,
    catalog: Catalog,
    sequences: dict[str, list[Step]],
    profiles: dict[str, dict[str, float | None]],
    queries: dict[str, np.ndarray] | None = None,
    fine_of: dict[int, str] | None = None,
    cfg: RankingTrainConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[RankingModels, RankingReport]:
    cfg = cfg or RankingTrainConfig()
    start = time.perf_counter()
    rng = random.Random(cfg.seed)
    vecs = catalog.vector_map()

    def context_of(pid: int) -> np.ndarray | None:
        return queries.get(fine_of.get(pid, "")) if queries and fine_of else None

    tower, user_hist = train_user_tower(sequences, vecs, profiles, context_of, cfg.user, log)
    popularity = Counter(s.product_id for seq in sequences.values() for s in seq)
    cooc = CoOccurrence.fit({u: [s.product_id for s in seq] for u, seq in sequences.items()}, cfg.cooc_neighbours)
    log(f"co-occurrence: {len(cooc.ids)} items, {int((cooc.neighbours >= 0).sum())} neighbour pairs")
    folds, sasrec = _fit_sasrec(sequences, cfg, log)
    if folds is None:  # no SASRec: its candidate places go to the content source
        cfg = cfg.model_copy(update={"sasrec_candidates": 0})
    impressions = _impressions(tower, catalog, sequences, profiles, popularity, cooc, cfg, folds)
    if len(impressions) < MIN_IMPRESSIONS and not cfg.missed_targets:  # a tiny log: take every click
        every = cfg.model_copy(update={"missed_targets": True})
        impressions = _impressions(tower, catalog, sequences, profiles, popularity, cooc, every, folds)
    prices = np.array([math.log1p(f.price) for f in catalog.features])
    rcfg = RerankerConfig(
        std_size=len(encoder.std_vocab),
        re_size=encoder.tower.re_emb.num_embeddings,
        price_mean=float(prices.mean()),
        price_std=float(prices.std() or 1.0),
        pop_scale=math.log1p(max(popularity.values(), default=1)),
        cooc=True,
        cooc_scale=_cooc_scale(impressions),
        sequence=sasrec is not None,
    )
    deepfm = DeepFMReranker(rcfg, seed=cfg.seed)
    copied = deepfm.transfer(encoder.tower)
    log(f"DeepFM: transferred {copied} rows from the item tower")
    rows = [
        _deepfm_rows(deepfm, cands, target, hist, user_features(hf, prof), rng, cfg)
        for _, cands, target, _, hist, prof, hf in impressions
    ]
    y = np.concatenate([r[1] for r in rows])
    log(f"DeepFM: {len(y)} impressions ({int(y.sum())} positives)")
    deepfm_loss = _train_deepfm(deepfm, rows, cfg)
    log("DeepFM loss per epoch: " + ", ".join(f"{v:.4f}" for v in deepfm_loss))
    # Cross-fitting: the self-attention reranker must see DeepFM's scores on lists DeepFM
    # did not train on (on its own rows they are over-confident). Users fall in two halves
    # by a stable hash (not Python's salted one); each half's lists are scored by a DeepFM
    # fitted on the other half, so every user's lists teach the reranker, while the DeepFM
    # that serves (above) is fitted on every user.
    half = [half_of(u) for u, *_ in impressions]
    scorers = []
    for h in (0, 1):
        other = [r for r, f in zip(rows, half, strict=True) if f != h]
        model = DeepFMReranker(rcfg, seed=cfg.seed)
        model.transfer(encoder.tower)
        if other:
            _train_deepfm(model, other, cfg)
        scorers.append(model if other else deepfm)
    lists = [
        _candidate_list(scorers[h], cands, target, uvec, hist, user_features(hf, prof), rng, cfg)
        for (_, cands, target, uvec, hist, prof, hf), h in zip(impressions, half, strict=True)
    ]
    diversity, div_hist = train_diversity(lists, epochs=cfg.diversity_epochs, seed=cfg.seed, log=log)
    report = RankingReport(
        user_tower=user_hist,
        deepfm_loss=deepfm_loss,
        deepfm_objective=cfg.deepfm_loss,
        diversity=div_hist,
        sasrec_loss=sasrec.losses if sasrec is not None else [],
        impressions=len(y),
        lists=len(lists),
        transferred_rows=copied,
        seconds=time.perf_counter() - start,
    )
    return RankingModels(tower, deepfm, diversity, cooc, sasrec), report


def half_of(user: str) -> int:
    """The user's cross-fitting half: a stable hash (not Python's salted one)."""
    return zlib.crc32(user.encode()) % 2


def _fit_sasrec(
    sequences: dict[str, list[Step]], cfg: RankingTrainConfig, log: Callable[[str], None]
) -> tuple[tuple[SASRec, SASRec] | None, SASRec | None]:
    """(the SASRecs the impressions read: [h] fitted on the users outside half h, the one
    that ships: fitted on every user); (None, None) when ``cfg.sasrec`` is None or a half
    is too small to teach DeepFM what the score is worth."""
    if cfg.sasrec is None:
        return None, None
    ids = {u: [s.product_id for s in seq] for u, seq in sorted(sequences.items())}
    others = [[seq for u, seq in ids.items() if half_of(u) != h] for h in (0, 1)]
    transitions = min(sum(max(len(seq) - 1, 0) for seq in part) for part in others)
    if transitions < cfg.sasrec_min_transitions:
        log(f"SASRec left out: {transitions} transitions in a half of the users (< {cfg.sasrec_min_transitions})")
        return None, None
    folds = (
        SASRec.fit(others[0], cfg.sasrec, "SASRec (half 1 of 2)"),
        SASRec.fit(others[1], cfg.sasrec, "SASRec (half 2 of 2)"),
    )
    shipped = SASRec.fit(list(ids.values()), cfg.sasrec, "SASRec")
    log(f"SASRec: {len(shipped.vocab)} items, loss {shipped.losses[-1] if shipped.losses else float('nan'):.3f}")
    return folds, shipped
