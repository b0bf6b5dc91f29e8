"""Unit tests of the stages after the item tower: user tower, DeepFM with weight
transfer, the self-attention reranker, their training and their artifacts."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models import diversity, registry
from models.diversity import CandidateList, DiversityConfig, SelfAttentionReranker, select, train_diversity
from models.encoder import ItemEncoder
from models.interactions import Event, InteractionLog, leave_last_out
from models.pipeline import OfflinePipeline, steps_by_user
from models.ranking import Candidates, RankingModels, rank
from models.rerank import intra_list_diversity, mmr
from models.reranker import DeepFMReranker, RerankerConfig, item_features, user_features
from models.sasrec import SASRecConfig
from models.train_ranking import (
    RankingTrainConfig,
    _padded,
    _train_deepfm,
    build_catalog,
    category_queries,
    train_ranking,
)
from models.train_user import Step, UserTrainConfig, train_user_tower
from models.user_tower import ProfileStats, UserState, UserTower, UserTowerConfig
from models.vocab import ReVocab
from schemas.events import ProductEnriched, Profile

FINES = [("outer", "coat"), ("outer", "jacket"), ("top", "knit"), ("top", "shirt"), ("bottom", "skirt")]


def catalog_items(n_per: int = 8) -> list[ProductEnriched]:
    items = []
    for f, (coarse, fine) in enumerate(FINES):
        for j in range(n_per):
            items.append(
                ProductEnriched(
                    product_id=100 * f + j,
                    title=f"{fine} {j}",
                    std={"category": [f"{coarse}/{fine}"], "color": [["black", "navy"][j % 2]]},
                    re={"fabric.material": [["wool", "cotton", "linen"][j % 3]]},
                    coarse=coarse,
                    fine=fine,
                    price=20.0 + j,
                    enricher="test",
                )
            )
    return items


def encoder(tmp_path: Path) -> ItemEncoder:
    model = registry.load_or_init(tmp_path / "models")
    return ItemEncoder(model.tower, model.std_vocab, ReVocab(tmp_path / "re.jsonl"), model.manifest.version, 2)


def toy_log(items: list[ProductEnriched], users: int = 30) -> InteractionLog:
    """Each user sticks to one fine category: the next item is predictable from content."""
    rng = random.Random(0)
    by_fine: dict[str, list[int]] = {}
    for it in items:
        by_fine.setdefault(it.fine, []).append(it.product_id)
    events = []
    for u in range(users):
        fine = FINES[u % len(FINES)][1]
        for t in range(8):
            events.append(Event(f"u{u}", rng.choice(by_fine[fine]), 1000.0 * t + u, "click"))
    profiles = {f"u{u}": Profile(height_cm=150 + u, age=None) for u in range(users)}
    return InteractionLog("toy", items, events, profiles)


def test_user_tower_is_128d_unit_with_or_without_inputs() -> None:
    torch.manual_seed(0)
    tower = UserTower(UserTowerConfig())
    vecs = np.random.default_rng(0).normal(size=(3, 128)).astype(np.float32)
    states = [
        UserState(vecs, ["click", "cart", "purchase"], [1.0, 5.0, 100.0], profile={"height_cm": 170.0}),
        UserState(np.zeros((0, 128), np.float32), [], [], context=vecs[0]),  # context only
        UserState(np.zeros((0, 128), np.float32), [], []),  # nothing at all: still a vector
    ]
    out = tower.encode(states)
    assert out.shape == (3, 128)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(out).all()


def test_profile_is_z_scored_and_missing_values_are_flagged() -> None:
    stats = ProfileStats.fit([{"height_cm": 160.0}, {"height_cm": 180.0}, {"height_cm": None}])
    assert stats.mean["height_cm"] == pytest.approx(170.0)
    z_h, z_w, z_a, miss_h, miss_w, miss_a = stats.features({"height_cm": 180.0})
    assert z_h == pytest.approx(1.0) and (z_w, z_a) == (0.0, 0.0)
    assert (miss_h, miss_w, miss_a) == (0.0, 1.0, 1.0)
    assert stats.features(None)[3:] == [1.0, 1.0, 1.0]


def test_user_tower_learns_next_items_of_the_users_category(tmp_path: Path) -> None:
    items = catalog_items()
    enc = encoder(tmp_path)
    vecs = dict(zip([it.product_id for it in items], enc.encode(items), strict=True))
    log = toy_log(items)
    seqs = steps_by_user(log.events)
    tower, history = train_user_tower(seqs, vecs, {}, cfg=UserTrainConfig(epochs=4, batch_size=64), log=lambda _: None)
    assert history.loss[-1] < history.loss[0]
    assert tower.encode([UserState(np.stack([vecs[0]]), ["click"], [0.0])]).shape == (1, 128)


def test_deepfm_tables_are_shared_and_transferred_from_the_item_tower(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    tower = enc.tower
    model = DeepFMReranker(RerankerConfig(std_size=len(enc.std_vocab), re_size=tower.re_emb.num_embeddings))
    # Every STD feature (coarse, fine, colour, the user's) looks up ONE table, every RE feature another.
    assert set(model.model.embedding_dict) == {"std", "re"}
    copied = model.transfer(tower)
    assert copied == {"std": len(enc.std_vocab), "re": tower.re_emb.num_embeddings}
    std = model.model.embedding_dict["std"].weight
    assert torch.allclose(std, tower.std_emb.weight * model.cfg.transfer_scale)
    # The documented mapping: row id of "coarse=outer" in the StdVocab is that row in "std".
    outer = enc.std_vocab.id("coarse", "outer")
    assert torch.allclose(std[outer], tower.std_emb.weight[outer] * model.cfg.transfer_scale)


def test_deepfm_matrix_follows_the_feature_index_and_drops_unknown_ids(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    items = catalog_items(2)
    enc.encode_growing(items)
    model = DeepFMReranker(RerankerConfig(std_size=len(enc.std_vocab), re_size=3))  # tiny RE table
    feats = [item_features(enc, it, it.price) for it in items]
    user = user_features(feats[:2], None)
    x = model.matrix([user] * len(feats), feats, np.zeros((len(feats), 4), np.float32))
    assert x.shape[1] == max(end for _, end in model.model.feature_index.values())
    lo, hi = model.model.feature_index["re"]
    assert (x[:, lo:hi] < 3).all()  # ids past the table's rows became padding
    lo, _ = model.model.feature_index["fine"]
    assert x[0, lo] == enc.std_vocab.id("fine", items[0].fine)
    assert np.isfinite(model.score(x)).all()


def _reference_matrix(model: DeepFMReranker, users: list, items: list, dense: np.ndarray) -> np.ndarray:
    """The matrix built column by column, as before the per-item rows were kept."""
    c = model.cfg
    n = len(items)

    def pad(rows: list, width: int, limit: int) -> np.ndarray:
        out = np.zeros((len(rows), width), dtype=np.float32)
        for i, row in enumerate(rows):
            ids = [j if j < limit else 0 for j in row[:width]]
            out[i, : len(ids)] = ids
        return out

    profile = np.array([u.profile for u in users], dtype=np.float32).reshape(n, 6)
    parts = {
        "coarse": np.array([[it.coarse] for it in items], dtype=np.float32),
        "fine": np.array([[it.fine] for it in items], dtype=np.float32),
        "color": np.array([[it.color] for it in items], dtype=np.float32),
        "user_fine": np.array([[u.fine] for u in users], dtype=np.float32),
        "std": pad([it.std for it in items], c.max_std, c.std_size),
        "re": pad([it.re for it in items], c.max_re, c.re_size),
        "user_std": pad([u.std for u in users], c.max_user, c.std_size),
        "user_re": pad([u.re for u in users], c.max_user, c.re_size),
        "price": np.array([[(math.log1p(it.price) - c.price_mean) / c.price_std] for it in items], dtype=np.float32),
        "ann": dense[:, :1],
        "hist_sim": dense[:, 1:2],
        "pop": (np.log1p(np.maximum(dense[:, 2:3], 0)) / max(c.pop_scale, 1e-6)).astype(np.float32),
        "pop_known": dense[:, 3:4],
    }
    for j, name in enumerate(("z_height", "z_weight", "z_age", "miss_height", "miss_weight", "miss_age")):
        parts[name] = profile[:, j : j + 1]
    cooc = dense[:, 4:7]
    parts["cooc"], parts["cooc_rel"], parts["cooc_known"] = cooc[:, :1] * c.cooc_scale, cooc[:, 1:2], cooc[:, 2:3]
    ordered = sorted(model.model.feature_index.items(), key=lambda kv: kv[1][0])
    return np.concatenate([parts[name] for name, _ in ordered], axis=1).astype(np.float32)


def test_deepfm_matrix_with_kept_item_rows_equals_the_column_by_column_build(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    items = catalog_items(3)
    enc.encode_growing(items)
    cfg = RerankerConfig(
        std_size=len(enc.std_vocab), re_size=3, max_std=2, max_user=1, cooc=True, price_mean=1.5, cooc_scale=7.0
    )  # tiny RE table, short lists: padding, truncation and dropped ids all happen
    model = DeepFMReranker(cfg)
    feats = [item_features(enc, it, it.price) for it in items]
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(len(feats), 7)).astype(np.float32)
    shared = user_features(feats[:2], [0.5, -1.0, 0.0, 0.0, 0.0, 1.0])
    others = [user_features(feats[i : i + 2], None) for i in range(len(feats))]
    for users in ([shared] * len(feats), others):
        for _ in range(2):  # computed, then from the kept rows
            assert np.array_equal(model.matrix(users, feats, dense), _reference_matrix(model, users, feats, dense))
    assert model.matrix([], [], np.zeros((0, 7), np.float32)).shape == (
        0,
        _reference_matrix(model, [shared], feats[:1], dense[:1]).shape[1],
    )


def test_deepfm_forward_gives_the_numbers_of_deepctrs_own_forward(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    items = catalog_items(4)
    enc.encode_growing(items)
    feats = [item_features(enc, it, it.price) for it in items]
    rng = np.random.default_rng(1)
    for cooc in (False, True):
        model = DeepFMReranker(
            RerankerConfig(std_size=len(enc.std_vocab), re_size=enc.tower.re_emb.num_embeddings, cooc=cooc)
        )
        model.transfer(enc.tower)
        with torch.no_grad():  # weights away from their near-zero init, so every term counts
            for p in model.model.parameters():
                p.add_(torch.from_numpy(rng.normal(scale=0.1, size=tuple(p.shape)).astype(np.float32)))
        model.model.eval()
        one = user_features(feats[:3], None)
        # A user per row, one user for every row (a request: its lookups done once) and two
        # users with several rows each (a micro-batch of two requests: each user's done once).
        other = user_features(feats[1:], [0.5, -1.0, 0.0, 0.0, 0.0, 1.0])
        per_row = [user_features(feats[i : i + 3], None) for i in range(len(feats))]
        half = len(feats) // 2
        for users in (per_row, [one] * len(feats), [one] * half + [other] * (len(feats) - half)):
            x = torch.from_numpy(model.matrix(users, feats, rng.normal(size=(len(feats), 7)).astype(np.float32)))
            with torch.inference_mode():
                assert torch.equal(model.forward(x), model.model(x))
            assert np.array_equal(model.score(x.numpy()), model.model(x).detach().numpy().ravel())


def test_select_is_the_score_order_at_lambda_one_and_diversifies_below() -> None:
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    scores = np.array([3.0, 2.9, 1.0])
    assert select(scores, vectors, 3, 1.0) == [0, 1, 2]
    assert select(scores, vectors, 2, 0.3) == [0, 2]  # the near-duplicate of 0 waits


def test_mean_redundancy_is_each_picks_effect_on_ild() -> None:
    """After picking a and b, P is half-similar to both and Q similar to a but opposite to
    b: classic MMR (max similarity) takes P, the mean similarity takes Q, and Q's list has
    the higher ILD (mean pairwise distance 1.0 vs 0.67)."""
    q = float(np.sqrt(1 - 0.72))
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, np.sqrt(0.5)], [0.6, -0.6, q]], dtype=np.float32)
    relevance = np.array([1.0, 0.9, 0.8, 0.8])
    by_max, by_mean = mmr(relevance, vectors, 3, 0.5, "max"), mmr(relevance, vectors, 3, 0.5, "mean")
    assert by_max == [0, 1, 2] and by_mean == [0, 1, 3]
    assert intra_list_diversity(vectors[by_mean]) == pytest.approx(1.0, abs=1e-5)
    assert intra_list_diversity(vectors[by_max]) == pytest.approx(2 / 3, abs=1e-5)
    assert mmr(relevance, vectors, 4, 1.0, "mean") == [0, 1, 2, 3]  # lambda 1: relevance order
    # select (after the self-attention reranker) uses the mean; its MMR baseline the max
    assert select(relevance * 5, vectors, 3, 0.5) == by_mean
    assert select(relevance * 5, vectors, 3, 0.5, "max") == by_max


def test_a_two_score_self_attention_reranker_of_an_older_version_still_ranks(tmp_path: Path) -> None:
    items = catalog_items()
    enc = encoder(tmp_path)
    feats = [item_features(enc, it) for it in items[:12]]
    deepfm = DeepFMReranker(RerankerConfig(std_size=len(enc.std_vocab), re_size=8, cooc=True))
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(12, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cands = Candidates(vecs, vecs @ vecs[0], feats, np.arange(12, dtype=np.float32), cooc=np.zeros((12, 2), np.float32))
    for width in (2, 8):
        models = RankingModels(None, deepfm, SelfAttentionReranker(DiversityConfig(scores=width)))
        order = rank(models, vecs[0], user_features(feats[:2], None), cands, vecs[:2], 5, 0.7, explore_slots=0)
        assert len(set(order)) == 5


def test_self_attention_reranker_learns_to_put_the_clicked_item_first() -> None:
    rng = np.random.default_rng(0)
    lists = []
    for _ in range(64):
        vecs = rng.normal(size=(20, 128)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        user = vecs[3] + 0.1 * rng.normal(size=128).astype(np.float32)
        lists.append(CandidateList(user, vecs, np.zeros((20, 2), np.float32), target=3))
    model, history = train_diversity(lists, epochs=8, batch_size=16, log=lambda _: None)
    assert history.loss[-1] < history.loss[0]
    assert isinstance(model, SelfAttentionReranker)


def test_the_wide_term_learns_a_score_column_the_list_is_ordered_by(tmp_path: Path) -> None:
    """Column 4 (co-occurrence in ``list_scores``) alone says which candidate was clicked:
    the linear path finds its weight; saved and loaded, the model keeps it; a version
    trained before the term (no ``wide`` in its config) loads without one."""
    rng = np.random.default_rng(0)
    lists = []
    for _ in range(96):
        vecs = rng.normal(size=(20, 128)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        scores = np.zeros((20, 8), np.float32)
        scores[:, 4] = rng.random(20)
        lists.append(CandidateList(vecs[0], vecs, scores, target=int(np.argmax(scores[:, 4]))))
    model, _ = train_diversity(lists, epochs=6, batch_size=16, log=lambda _: None)
    assert model.wide is not None
    weights = model.wide.weight[0].detach().abs()  # columns 1..7 (column 0 is ``keep``'s)
    assert int(weights.argmax()) == 3 and float(weights[3]) > 0.2
    diversity.save(model, tmp_path / "div")
    loaded = diversity.load(tmp_path / "div")
    assert np.allclose(loaded.score(lists[0]), model.score(lists[0]), atol=1e-6)
    old = SelfAttentionReranker(DiversityConfig.model_validate_json('{"scores": 8}'))
    assert old.wide is None and np.isfinite(old.score(lists[0])).all()


def test_ranking_pipeline_trains_saves_loads_and_ranks(tmp_path: Path) -> None:
    items = catalog_items()
    enc = encoder(tmp_path)
    log = toy_log(items)
    split = leave_last_out(log, cold_fraction=0.0)
    catalog = build_catalog(enc, items, {it.product_id: it.price or 0.0 for it in items})
    cfg = RankingTrainConfig(
        user=UserTrainConfig(epochs=2, batch_size=64),
        deepfm_epochs=1,
        diversity_epochs=1,
        candidates=20,
        sasrec=SASRecConfig(epochs=3),
        sasrec_min_transitions=50,  # the toy log: 30 users x 6 transitions, ~90 per half
    )
    profiles = {u: p.model_dump() for u, p in log.profiles.items()}
    fine_of = {it.product_id: it.fine for it in items}
    models, report = train_ranking(
        enc, catalog, steps_by_user(split.train), profiles, category_queries(enc, items), fine_of, cfg, lambda _: None
    )
    assert report.impressions > 0 and report.lists > 0
    assert report.transferred_rows["std"] == len(enc.std_vocab)

    base = registry.load_or_init(tmp_path / "models")
    manifest = registry.Manifest(version="rank-test", tower=base.tower.cfg, trained=True, item_space="v0-init")
    registry.save(tmp_path / "models", manifest, base.tower, base.std_vocab, ReVocab(), models)
    loaded = registry.load(tmp_path / "models", "rank-test")
    components = ["item_tower", "user_tower", "deepfm", "diversity", "cooccurrence", "sasrec"]
    assert loaded.manifest.components == components
    assert loaded.manifest.space == "v0-init"
    ranking = loaded.ranking
    stages = (ranking.user_tower, ranking.deepfm, ranking.diversity, ranking.cooccurrence, ranking.sasrec)
    assert all(m is not None for m in stages)
    assert ranking.deepfm is not None and ranking.deepfm.cfg.sequence  # SASRec's score is a DeepFM input
    assert ranking.diversity is not None and ranking.diversity.cfg.scores == 10  # logit + DeepFM's pair inputs
    assert ranking.sasrec is not None and models.sasrec is not None
    histories = [case.history for case in split.tests]
    assert np.array_equal(ranking.sasrec.scores(histories), models.sasrec.scores(histories))  # saved as trained

    pipeline = OfflinePipeline.from_split(catalog, loaded.ranking, split, profiles)
    for stage in ("two_tower", "deepfm", "mmr", "diversity"):
        ranked = pipeline.rank(split.tests, 5, stage)  # type: ignore[arg-type]
        assert ranked.shape == (len(split.tests), 5)
        for row, case in zip(ranked, split.tests, strict=True):
            assert not set(row.tolist()) & set(case.history)  # history excluded
            assert len(set(row.tolist())) == 5


def test_rank_without_trained_stages_is_mmr_over_ann_scores() -> None:
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(10, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    feats = [None] * 10
    cands = Candidates(vecs, np.linspace(1, 0, 10), feats, np.zeros(10))  # type: ignore[arg-type]
    order = rank(RankingModels(), vecs[0], user_features([], None), cands, None, 4, 1.0)
    assert order == [0, 1, 2, 3]
    assert {"deepfm_ms", "diversity_ms"} <= set(cands.timings_ms)


def test_steps_keep_time_order() -> None:
    events = [Event("u", 2, 20.0), Event("u", 1, 10.0)]
    assert [s.product_id for s in steps_by_user(events)["u"]] == [1, 2]
    assert isinstance(steps_by_user(events)["u"][0], Step)


def test_candidates_are_retrieved_items_plus_popular_ones_never_the_history() -> None:
    from models.train_ranking import merge_sources

    ann = [5, 6, 7, 8, -1]
    popular = [1, 5, 2, 3, 4]
    assert merge_sources([(ann, 3), (popular, 2)], exclude={2}, n=5) == [5, 6, 7, 1, 3]
    assert merge_sources([(ann, 3), ([], 2)], exclude=set(), n=5) == [5, 6, 7, 8]  # short of popular: more retrieved


def test_unknown_popularity_is_not_unpopular(tmp_path: Path) -> None:
    """A brand-new item (no interactions) gets pop_known = 0, not a count of 0 known."""
    from models.ranking import pair_dense

    vecs = np.eye(3, 128, dtype=np.float32)
    cands = Candidates(vecs, np.ones(3), [None] * 3, np.array([0.0, 5.0, 1.0]))  # type: ignore[list-item]
    dense = pair_dense(cands, None)
    assert dense[:, 3].tolist() == [0.0, 1.0, 1.0]


def test_listwise_deepfm_learns_which_row_of_each_list_was_clicked(tmp_path: Path) -> None:
    """The listwise loss is a softmax over each impression's rows: lists of different
    lengths (padded, the padding masked) whose clicked row is the one with the highest
    co-occurrence score; trained, DeepFM puts that row first in lists it has not seen.
    Without training it is chance, 1 in 8."""
    enc = encoder(tmp_path)
    items = catalog_items(4)
    enc.encode_growing(items)
    model = DeepFMReranker(RerankerConfig(std_size=len(enc.std_vocab), re_size=64, cooc=True), seed=0)
    feats = [item_features(enc, it, it.price) for it in items]
    user = user_features(feats[:2], None)
    rng = np.random.default_rng(0)

    def impression(n: int) -> tuple[np.ndarray, np.ndarray]:
        picked = rng.choice(len(feats), size=n, replace=False)
        dense = np.zeros((n, 7), np.float32)
        dense[:, 4], dense[:, 6] = 0.6 * rng.random(n), 1.0  # co-occurrence score, known
        dense[int(rng.integers(n)), 4] = 1.0  # the clicked row's: clearly the highest
        order = np.argsort(-dense[:, 4], kind="stable")  # the clicked row first, as in training
        x = model.matrix([user] * n, [feats[i] for i in picked[order]], dense[order])
        return x, np.array([1.0] + [0.0] * (n - 1))

    train = [impression(int(rng.integers(4, 12))) for _ in range(256)]
    xs, mask, target = _padded(train[:2])
    assert xs.shape == (2, max(len(train[0][1]), len(train[1][1])), train[0][0].shape[1])
    assert mask.sum(1).tolist() == [len(train[0][1]), len(train[1][1])] and target.tolist() == [0, 0]
    held_out = [impression(8) for _ in range(50)]

    def first() -> float:
        return float(np.mean([int(np.argmax(model.score(x))) == 0 for x, _ in held_out]))

    assert first() < 0.5
    cfg = RankingTrainConfig(deepfm_loss="listwise", deepfm_epochs=6, deepfm_batch=64, deepfm_lr=1e-2)
    losses = _train_deepfm(model, train, cfg)
    assert losses[-1] < losses[0]
    assert first() > 0.8
