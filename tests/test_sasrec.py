"""The SASRec component of a model version: its features, its save/load, the cross-fitted
models DeepFM's impressions read, and the dense columns it adds (older versions unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models.ranking import Candidates, pair_dense
from models.reranker import DeepFMReranker, RerankerConfig
from models.sasrec import SASRec, SASRecConfig
from models.train_ranking import RankingTrainConfig, _fit_sasrec, half_of
from models.train_user import Step

CYCLE = [11, 12, 13, 14, 15, 16]
TINY = SASRecConfig(epochs=40, dim=16, max_len=8, batch=32, lr=5e-3)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two torch threads on this shared 2-core machine run the tiny model ~8x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cycle_model() -> SASRec:
    torch.set_num_threads(1)
    return SASRec.fit([[CYCLE[(i + t) % 6] for t in range(12)] for i in range(24)], TINY)


def test_features_score_known_items_and_mark_unknown_ones(cycle_model: SASRec) -> None:
    scores = cycle_model.scores([[11, 12, 13]])[0]
    feats = cycle_model.features(scores, [14, 99, 12])
    assert feats[:, 1].tolist() == [1.0, 0.0, 1.0]  # 99: in no training sequence
    assert feats[1, 0] == 0.0
    assert feats[0, 0] == pytest.approx(scores[cycle_model.row[14] - 1])
    assert feats[0, 0] > feats[2, 0]  # 14 follows 13; 12 does not


def test_save_and_load_give_the_same_scores(cycle_model: SASRec, tmp_path: Path) -> None:
    cycle_model.save(tmp_path)
    loaded = SASRec.load(tmp_path)
    histories = [[11, 12], [15], [], [99, 13]]  # an empty one and an unknown id too
    assert loaded.vocab.tolist() == cycle_model.vocab.tolist()
    assert np.array_equal(loaded.scores(histories), cycle_model.scores(histories))


def test_impressions_read_a_sasrec_fitted_on_the_other_half_of_the_users() -> None:
    """Cross-fitting: the model that scores a user's impressions never saw that user (an
    item only that user had has no row in it); the other fold and the shipped model did."""
    seqs = {f"u{i}": [Step(CYCLE[(i + t) % 6], float(t), "click") for t in range(10)] for i in range(12)}
    seqs["late"] = [Step(p, float(t), "click") for t, p in enumerate([11, 12, 13, 14, 77, 78])]
    cfg = RankingTrainConfig(sasrec=TINY.model_copy(update={"epochs": 2}), sasrec_min_transitions=20)
    folds, shipped = _fit_sasrec(seqs, cfg, lambda _: None)
    assert folds is not None and shipped is not None
    mine, other = folds[half_of("late")], folds[1 - half_of("late")]
    assert {77, 78} <= set(shipped.vocab.tolist()) & set(other.vocab.tolist())
    assert not {77, 78} & set(mine.vocab.tolist())
    assert _fit_sasrec(seqs, RankingTrainConfig(sasrec=None), lambda _: None) == (None, None)


def test_a_log_too_short_to_split_ships_no_sasrec() -> None:
    """Four users of 10 events: 18 transitions per half, under the floor (here 20): no
    SASRec rather than one DeepFM never learnt to read."""
    users = ["a", "b", "c", "d", "e", "f", "g"]
    halves = [[u for u in users if half_of(u) == h][:2] for h in (0, 1)]
    seqs = {u: [Step(CYCLE[t % 6], float(t), "click") for t in range(10)] for part in halves for u in part}
    assert len(seqs) == 4
    logged: list[str] = []
    cfg = RankingTrainConfig(sasrec=TINY, sasrec_min_transitions=20)
    assert _fit_sasrec(seqs, cfg, logged.append) == (None, None)
    assert "SASRec left out: 18 transitions in a half" in logged[0]


def test_pair_dense_z_scores_sasrec_among_known_candidates() -> None:
    n = 4
    vecs = np.eye(n, 128, dtype=np.float32)
    seq = np.array([[3.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 1.0]], np.float32)
    cands = Candidates(vecs, np.zeros(n), [None] * n, np.ones(n), seq=seq)  # type: ignore[list-item]
    dense = pair_dense(cands, None)
    assert dense.shape == (n, 9)
    assert dense[:, 7] == pytest.approx([1.2247449, -1.2247449, 0.0, 0.0])  # mean 2, std sqrt(2/3)
    assert dense[:, 8].tolist() == [1.0, 1.0, 0.0, 1.0]
    alone = Candidates(vecs[:2], np.zeros(2), [None] * 2, np.ones(2), seq=seq[1:3])  # type: ignore[list-item]
    assert pair_dense(alone, None)[:, 7].tolist() == [0.0, 0.0]  # one known item: no spread


def test_only_versions_trained_with_sasrec_read_its_columns() -> None:
    """An older DeepFM (no ``sequence`` in its config) has no SASRec inputs, a new one has;
    ``pair_inputs`` gives every caller the SASRec columns (zeros when the caller has none)."""
    dense = np.random.default_rng(0).normal(size=(5, 9)).astype(np.float32)
    other = dense.copy()
    other[:, 7:9] = 0.0
    old = DeepFMReranker(RerankerConfig.model_validate({"std_size": 8, "re_size": 8, "cooc": True}))
    new = DeepFMReranker(RerankerConfig(std_size=8, re_size=8, cooc=True, sequence=True))
    assert "seq" not in old.model.feature_index and "seq" in new.model.feature_index
    assert old.pair_inputs(dense).shape == (5, 9)
    assert np.array_equal(old.pair_inputs(dense)[:, :7], old.pair_inputs(other)[:, :7])
    assert old.pair_inputs(dense[:, :7])[:, 7:].tolist() == [[0.0, 0.0]] * 5  # a 7-column caller: unknown


def test_serving_takes_sasrec_best_next_items_as_candidates() -> None:
    """A version with SASRec: of the 100 candidates, SASREC_CANDIDATES are its best
    unseen next items (as ``candidate_rows`` offline), the retrieval gives up as many."""
    from consumers.vector_store import Hit
    from models.ranking import RankingModels
    from streams.serving import POPULAR_CANDIDATES, SASREC_CANDIDATES, Recommender

    model = SASRec(TINY, list(range(3000, 3060)))
    scores = np.random.default_rng(0).normal(size=60).astype(np.float32)
    best = [3000 + int(i) for i in np.argsort(-scores)]
    seen = set(best[:3])  # the three best are in the history: never candidates
    rec = Recommender(None, None, None, 100, RankingModels(deepfm=object(), sasrec=model))  # type: ignore[arg-type]
    hits = [Hit(product_id=1000 + i, score=1.0 - i / 200) for i in range(100)]
    popular = [(2000 + i, 50 - i) for i in range(40)]
    keep, extra = rec._with_popular(hits, seen, sorted(seen), popular, None, scores)  # noqa: SLF001
    assert [p for p in extra if p >= 3000] == best[3 : 3 + SASREC_CANDIDATES]
    assert len(keep) == 100 - SASREC_CANDIDATES - POPULAR_CANDIDATES
    assert len(set(extra) | {h.product_id for h in keep}) == 100


def test_retrain_refuses_negative_sasrec_epochs() -> None:
    """0 means "no SASRec"; a negative count is a typo, not a second way to say it."""
    from pydantic import ValidationError

    from streams.retrain import RetrainOptions

    assert RetrainOptions(sasrec_epochs=0).sasrec_epochs == 0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        RetrainOptions(sasrec_epochs=-1)
