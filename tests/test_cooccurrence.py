"""The co-occurrence component (third candidate source + DeepFM features) and the
exploration policy of the final selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.cooccurrence import CoOccurrence
from models.ranking import Candidates, RankingModels, explore, pair_dense, rank
from models.reranker import user_features
from models.train_ranking import merge_sources
from streams.serving import cooc_features, cooccurring

# Users 1 and 2 both had 10 and 11; only user 3 had 12 (with 10); 13 is new (no one).
SEQS = {"u1": [10, 11], "u2": [10, 11, 14], "u3": [10, 12]}


def table() -> CoOccurrence:
    return CoOccurrence.fit(SEQS, top_n=3, decay=0.5)


def test_sims_are_the_cosine_of_who_interacted() -> None:
    t = table()
    row = t.row[10]
    sims = dict(zip(t.neighbours[row].tolist(), t.sims[row].tolist(), strict=True))
    # 10: users {1,2,3}, 11: {1,2}, 12: {3}, 14: {2}
    assert sims[11] == pytest.approx(2 / math.sqrt(3 * 2))
    assert sims[12] == pytest.approx(1 / math.sqrt(3 * 1))
    assert t.neighbours[row][0] == 11  # best first
    assert 10 not in t.neighbours[row].tolist()  # never its own neighbour
    assert t.users[t.row[10]] == 3


def test_small_blocks_give_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory bound (dense cells per block) changes how many rows a block takes, never
    the result: one item row per block here."""
    import models.cooccurrence as cooccurrence

    whole = table()
    monkeypatch.setattr(cooccurrence, "DENSE_CELLS", 1)
    split = table()
    assert np.array_equal(whole.neighbours, split.neighbours)
    assert np.allclose(whole.sims, split.sims)


def test_save_load_round_trip(tmp_path: Path) -> None:
    t = table()
    t.save(tmp_path / "v1")
    loaded = CoOccurrence.load(tmp_path / "v1")
    for name in ("ids", "neighbours", "sims", "users"):
        assert np.array_equal(getattr(loaded, name), getattr(t, name))
    assert (loaded.decay, loaded.recent) == (t.decay, t.recent)
    assert loaded.candidates([10], 5) == t.candidates([10], 5)


def test_candidates_follow_the_latest_history_and_skip_excluded() -> None:
    t = table()
    assert t.candidates([10], 5) == [11, 12, 14]
    assert t.candidates([10], 5, exclude={11}) == [12, 14]
    # The latest item votes most: after 14, its neighbours (10, 11) lead.
    assert t.candidates([12, 14], 2) == [10, 11]
    assert t.candidates([13], 5) == []  # a new item co-occurs with nothing


def test_features_tell_unknown_from_no_co_occurrence() -> None:
    t = table()
    f = t.features([10], [11, 13, 14])
    assert f[0, 0] > 0 and f[0, 1] == 1.0
    assert f[1].tolist() == [0.0, 0.0]  # 13: new, unknown (not "never co-occurs")
    assert f[2, 1] == 1.0


def test_training_rows_leave_the_users_own_interactions_out() -> None:
    t = table()
    # User 3 at prefix [10]: 12 co-occurs with 10 only through user 3 itself.
    own = set(SEQS["u3"])
    f = t.features([10], [12, 11], own=own)
    assert f[0].tolist() == [0.0, 0.0]  # only this user had 12: as new as a new item
    assert f[1, 0] == pytest.approx(2 / math.sqrt(2 * 2))  # 10 without user 3: {1, 2}
    assert 12 not in t.candidates([10], 5, own=own)


def test_merge_sources_keeps_each_quota_then_fills() -> None:
    ann, cooc, popular = [1, 2, 3, 4], [2, 5, 6], [7, 1, 8]
    assert merge_sources([(ann, 2), (cooc, 2), (popular, 1)], exclude={6}, n=5) == [1, 2, 5, 7, 3]
    assert merge_sources([(ann, 2), ([], 2), (popular, 1)], exclude=set(), n=5) == [1, 2, 7, 3, 4]


def test_explore_gives_unknown_items_the_last_slots() -> None:
    relevance = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    unknown = np.array([False, False, False, True, True])
    assert explore([0, 1, 2], relevance, unknown, 3, 1) == [0, 1, 3]
    assert explore([0, 1, 2], relevance, unknown, 3, 0) == [0, 1, 2]
    assert explore([0, 3, 1], relevance, unknown, 3, 1) == [0, 3, 1]  # already has one


def test_rank_reserves_an_exploration_slot_per_request() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 128)).astype(np.float32)
    pop = np.array([9.0, 8.0, 7.0, 6.0, 0.0, 5.0])  # item 4 is new
    cands = Candidates(vecs, np.linspace(1, 0, 6), [None] * 6, pop)  # type: ignore[list-item]
    user = user_features([], None)
    assert rank(RankingModels(), vecs[0], user, cands, None, 3, 1.0, explore_slots=0) == [0, 1, 2]
    assert rank(RankingModels(), vecs[0], user, cands, None, 3, 1.0, explore_slots=1) == [0, 1, 4]


def test_pair_dense_carries_co_occurrence_and_serving_helpers_match() -> None:
    t = table()
    vecs = np.eye(3, 128, dtype=np.float32)
    ids = [11, 13, 14]
    feats = cooc_features(t, [10], ids)
    cands = Candidates(vecs, np.ones(3), [None] * 3, np.array([2.0, 0.0, 1.0]), cooc=feats)  # type: ignore[list-item]
    dense = pair_dense(cands, None)
    assert dense.shape == (3, 9)
    assert not dense[:, 7:].any()  # no SASRec scores: unknown
    expected = t.features([10], ids)
    assert np.array_equal(dense[:, [4, 6]], expected)
    assert dense[:, 5].max() == 1.0 and np.allclose(dense[:, 5], expected[:, 0] / expected[:, 0].max())
    assert cooc_features(None, [10], ids) is None
    assert cooccurring(t, [10], {11}) == [12, 14]
    assert cooccurring(None, [10], set()) == []


def test_scores_computed_once_give_the_same_candidates_and_features() -> None:
    t = table()
    for history in ([10], [10, 11], [12, 10, 14], []):
        scores = t.scores(history)
        ids = [11, 12, 13, 14]
        assert cooccurring(t, history, {11}, scores) == cooccurring(t, history, {11})
        assert np.array_equal(cooc_features(t, history, ids, scores), cooc_features(t, history, ids))


def test_serving_fills_places_a_dry_source_left_with_further_hits() -> None:
    """As merge_sources offline: with few co-occurring items the list still has
    ``candidates`` items, the rest from further down the retrieval."""
    from consumers.vector_store import Hit
    from streams.serving import COOC_CANDIDATES, POPULAR_CANDIDATES, Recommender

    rec = Recommender(None, None, None, 100, RankingModels(deepfm=object(), cooccurrence=table()))  # type: ignore[arg-type]
    hits = [Hit(product_id=1000 + i, score=1.0 - i / 200) for i in range(100)]
    popular = [(2000 + i, 50 - i) for i in range(40)]
    keep, extra = rec._with_popular(hits, {10}, [10], popular)  # noqa: SLF001
    cooc = [p for p in extra if p < 1000]
    assert 0 < len(cooc) < COOC_CANDIDATES  # 10 co-occurs with a few items only
    assert len(keep) + len(extra) == 100
    assert [h.product_id for h in keep] == [1000 + i for i in range(100 - POPULAR_CANDIDATES - len(cooc))]
    assert len(set(extra) | {h.product_id for h in keep}) == 100
