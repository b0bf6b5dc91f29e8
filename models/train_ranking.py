"""Training of everything after the item tower, in order, on one interaction log:

1. user tower on next-item examples (item vectors frozen);
2. impressions: for the last few prefixes of each training user, the user tower's exact
   top-100 (history excluded) = what retrieval would have shown; the next item is the
   positive, retrieved items are the (hard) negatives;
3. DeepFM on those impressions, its STD/RE tables transferred from the item tower;
4. the self-attention reranker on the lists of a disjoint quarter of the users (DeepFM's
   scores on its own training rows would be over-confident).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from tqdm import tqdm

from models.diversity import CandidateList, DiversityHistory, train_diversity
from models.encoder import ItemEncoder, ItemInput
from models.ranking import Candidates, RankingModels, deepfm_logits, pair_dense
from models.reranker import DeepFMReranker, ItemFeatures, RerankerConfig, item_features, user_features
from models.train_user import Step, UserTrainConfig, UserTrainHistory, state_of, train_user_tower
from models.user_tower import UserTower


class RankingTrainConfig(BaseModel):
    user: UserTrainConfig = UserTrainConfig()
    candidates: int = 100
    popular_candidates: int = 20  # of the candidates, how many come from popularity
    pop_unknown_rate: float = 0.25  # rows shown as "popularity unknown" in DeepFM training
    impressions_per_user: int = 6
    negatives: int = 24
    deepfm_epochs: int = 4
    deepfm_batch: int = 512
    deepfm_lr: float = 1e-3
    diversity_epochs: int = 6
    seed: int = 0


class RankingReport(BaseModel):
    user_tower: UserTrainHistory
    deepfm_loss: list[float]
    diversity: DiversityHistory
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


@dataclass(frozen=True)
class _Query:
    title: str
    std: dict[str, list[str]]
    re: dict[str, list[str]]
    coarse: str
    fine: str


def category_queries(encoder: ItemEncoder, items: Sequence[ItemInput]) -> dict[str, np.ndarray]:
    """One pseudo item per fine category ("coat"): what a typed query looks like to the tower."""
    cats = sorted({(it.coarse, it.fine) for it in items})
    queries = [_Query(f, {"category": [f"{c}/{f}"]}, {}, c, f) for c, f in cats]
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


def with_popular(ann_rows: Sequence[int], popular_rows: Sequence[int], exclude: set[int], n: int, n_pop: int) -> list:
    """The candidate set: the best ``n - n_pop`` retrieved rows, then up to ``n_pop`` of
    the most popular rows not in it (nor excluded), then more retrieved rows if short.
    Two sources, as in production retrieval: content (reaches new items) and popularity
    (what a frozen content space cannot express)."""
    ann = [int(r) for r in ann_rows if r >= 0]
    out = ann[: n - n_pop]
    taken = set(out)
    extra = [r for r in popular_rows if r not in taken and r not in exclude][:n_pop]
    out += extra
    taken.update(extra)
    out += [r for r in ann[n - n_pop :] if r not in taken][: max(0, n - len(out))]
    return out


def _impressions(
    tower: UserTower,
    catalog: Catalog,
    sequences: dict[str, list[Step]],
    profiles: dict[str, dict[str, float | None]],
    popularity: Counter[int],
    cfg: RankingTrainConfig,
) -> list[tuple[str, Candidates, int, np.ndarray, np.ndarray, list[float], list[ItemFeatures]]]:
    """(user, candidates, target index, user vector, history vectors, profile, history features)."""
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
        for j, t in enumerate(positions):
            hist_rows = [catalog.row[p] for p in seen[j] if p in catalog.row]
            rows = with_popular(tops[j], popular, set(hist_rows), cfg.candidates, cfg.popular_candidates)
            target = catalog.row[seq[t].product_id]
            if target not in rows:  # the clicked item is an impression even if retrieval missed it
                rows = [*rows[: cfg.candidates - 1], target]
            cands = Candidates(
                vectors=catalog.vectors[rows],
                ann=catalog.vectors[rows] @ uvecs[j],
                features=[catalog.features[r] for r in rows],
                popularity=counts[rows],
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


def _train_deepfm(model: DeepFMReranker, x: np.ndarray, y: np.ndarray, cfg: RankingTrainConfig) -> list[float]:
    net = model.model
    opt = torch.optim.Adam(net.parameters(), lr=cfg.deepfm_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    losses = []
    for epoch in range(cfg.deepfm_epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = []
        for lo in tqdm(range(0, len(xt), cfg.deepfm_batch), desc=f"DeepFM {epoch + 1}", leave=False):
            idx = perm[lo : lo + cfg.deepfm_batch]
            pred = net(xt[idx]).squeeze(-1)
            loss = F.binary_cross_entropy(pred, yt[idx]) + net.get_regularization_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total.append(float(loss.item()))
        losses.append(float(np.mean(total)))
    net.eval()
    return losses


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
    impressions = _impressions(tower, catalog, sequences, profiles, popularity, cfg)
    # A stable hash (not Python's salted one) splits users: 3/4 DeepFM, 1/4 self-attention.
    quarter = {u for u, *_ in impressions if zlib.crc32(u.encode()) % 4 == 0}
    prices = np.array([math.log1p(f.price) for f in catalog.features])
    rcfg = RerankerConfig(
        std_size=len(encoder.std_vocab),
        re_size=encoder.tower.re_emb.num_embeddings,
        price_mean=float(prices.mean()),
        price_std=float(prices.std() or 1.0),
        pop_scale=math.log1p(max(popularity.values(), default=1)),
    )
    deepfm = DeepFMReranker(rcfg, seed=cfg.seed)
    copied = deepfm.transfer(encoder.tower)
    log(f"DeepFM: transferred {copied} rows from the item tower")
    xs, ys = [], []
    for user, cands, target, _, hist, prof, hist_feats in impressions:
        if user in quarter:
            continue
        negatives = [i for i in range(len(cands.ann)) if i != target]
        keep = [target, *rng.sample(negatives, min(cfg.negatives, len(negatives)))]
        uf = user_features(hist_feats, prof)
        sub = Candidates(
            cands.vectors[keep], cands.ann[keep], [cands.features[i] for i in keep], cands.popularity[keep]
        )
        dense = pair_dense(sub, hist)
        unknown = np.array([rng.random() < cfg.pop_unknown_rate for _ in keep])
        dense[unknown, 2:4] = 0.0  # "popularity unknown", as for a brand-new product
        xs.append(deepfm.matrix([uf] * len(keep), sub.features, dense))
        ys.append(np.array([1.0] + [0.0] * (len(keep) - 1)))
    x, y = np.concatenate(xs), np.concatenate(ys)
    log(f"DeepFM: {len(y)} impressions ({int(y.sum())} positives)")
    deepfm_loss = _train_deepfm(deepfm, x, y, cfg)
    log("DeepFM loss per epoch: " + ", ".join(f"{v:.4f}" for v in deepfm_loss))
    lists = [
        CandidateList(
            uvec,
            cands.vectors,
            np.stack([deepfm_logits(deepfm, user_features(hf, prof), cands, hist), cands.ann], axis=1),
            target,
        )
        for user, cands, target, uvec, hist, prof, hf in impressions
        if user in quarter
    ]
    diversity, div_hist = train_diversity(lists, epochs=cfg.diversity_epochs, seed=cfg.seed, log=log)
    report = RankingReport(
        user_tower=user_hist,
        deepfm_loss=deepfm_loss,
        diversity=div_hist,
        impressions=len(y),
        lists=len(lists),
        transferred_rows=copied,
        seconds=time.perf_counter() - start,
    )
    return RankingModels(tower, deepfm, diversity), report
