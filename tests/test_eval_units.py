"""The offline evaluation harness on tiny logs written here: the split, the ranking
metrics, the baseline rankers and the evaluation's vector fallback."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.baselines import ItemKNN, Popularity, SASRec
from bench.eval import category_vectors
from models.interactions import Event, InteractionLog, Split, TestCase, leave_last_out
from models.metrics import catalog_coverage, mean_ild, ndcg_at_k, recall_at_k
from schemas.events import ProductEnriched, Profile


def item(pid: int, coarse: str = "top", fine: str = "shirt") -> ProductEnriched:
    return ProductEnriched(product_id=pid, title=f"item {pid}", std={}, re={}, coarse=coarse, fine=fine, enricher="x")


def log_of(sequences: dict[str, list[int]], n_items: int | None = None) -> InteractionLog:
    """One event per product id; user i's t-th event at t * 100 + i (users interleave in time)."""
    users = enumerate(sequences.items())
    events = [Event(u, p, float(t * 100 + i)) for i, (u, seq) in users for t, p in enumerate(seq)]
    ids = range(1, (n_items or max(p for seq in sequences.values() for p in seq)) + 1)
    return InteractionLog("toy", [item(p) for p in ids], events, {})


# --- the split ---

SEQS = {
    "a": [1, 2, 3, 3, 4],  # the repeated 3 (same basket) counts once
    "b": [5, 6, 7, 8],
    "c": [2, 9, 10],
    "d": [1],  # no earlier interaction: no test case, trains only
    "e": [4, 5, 6, 1, 2, 3, 7, 8, 9, 10],
}


def test_last_interaction_is_the_target_and_history_is_the_warm_past() -> None:
    split = leave_last_out(log_of(SEQS), cold_fraction=0.0)
    cases = {c.user_id: c for c in split.tests}
    assert set(cases) == {"a", "b", "c", "e"} and split.cold_tests == [] and split.cold_items == frozenset()
    assert (cases["a"].history, cases["a"].target) == ([1, 2, 3], 4)
    assert (cases["c"].history, cases["c"].target) == ([2, 9], 10)
    trained = [(e.user_id, e.product_id) for e in split.train]
    assert ("d", 1) in trained and ("a", 4) not in trained and trained.count(("a", 3)) == 1
    assert [e.ts for e in split.train] == sorted(e.ts for e in split.train)


def test_cold_items_never_train_and_their_targets_are_kept_apart() -> None:
    split = leave_last_out(log_of(SEQS), cold_fraction=0.3, seed=3)
    assert len(split.cold_items) == 3  # 30% of the 10 interacted items
    assert not {e.product_id for e in split.train} & split.cold_items
    assert all(c.target not in split.cold_items for c in split.tests)
    assert all(c.target in split.cold_items for c in split.cold_tests)
    for case in split.tests + split.cold_tests:
        assert not set(case.history) & split.cold_items


def test_split_is_deterministic_and_independent_of_log_order() -> None:
    log = log_of(SEQS)
    shuffled = InteractionLog("toy", log.items, list(reversed(log.events)), {})
    first, again, other = leave_last_out(log, seed=7), leave_last_out(log, seed=7), leave_last_out(shuffled, seed=7)
    assert first == again == other
    assert leave_last_out(log, seed=8).cold_items != first.cold_items


def test_history_is_capped_to_the_latest_and_min_history_drops_short_users() -> None:
    split = leave_last_out(log_of(SEQS), cold_fraction=0.0, max_history=3, min_history=3)
    cases = {c.user_id: c for c in split.tests}
    assert set(cases) == {"a", "b", "e"}
    assert cases["e"].history == [7, 8, 9]
    with pytest.raises(ValueError):
        leave_last_out(log_of(SEQS), min_history=0)


def test_event_kind_is_checked_and_profile_takes_an_age() -> None:
    with pytest.raises(ValueError):
        Event("u", 1, 0.0, "view")
    assert Profile(age=33).age == 33
    with pytest.raises(ValueError):
        Profile(age=3)


# --- metrics, by hand ---

RANKED = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
TARGETS = np.array([2, 6, 100])


def test_recall_and_ndcg_by_hand() -> None:
    assert recall_at_k(RANKED, TARGETS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, TARGETS, 2) == pytest.approx(1 / 3)
    # hits at rank 1 (0-based) and 2: 1/log2(3) + 1/log2(4), over 3 cases
    assert ndcg_at_k(RANKED, TARGETS, 3) == pytest.approx((1 / math.log2(3) + 0.5) / 3)
    assert ndcg_at_k(np.array([[5, 1]]), np.array([5]), 2) == 1.0
    assert math.isnan(recall_at_k(np.zeros((0, 3)), np.zeros(0), 3))


def test_coverage_counts_distinct_items_and_ignores_padding() -> None:
    assert catalog_coverage(np.array([[1, 2, 7], [2, 3, -1]]), 2, 10) == pytest.approx(0.3)
    assert catalog_coverage(np.array([[1, 2, 7], [2, -1, -1]]), 3, 10) == pytest.approx(0.3)


def test_ild_is_mean_pairwise_cosine_distance_in_either_table_form() -> None:
    vectors = {1: np.array([1.0, 0.0]), 2: np.array([0.0, 3.0]), 3: np.array([2.0, 0.0])}
    ranked = np.array([[1, 2], [1, 3]])  # distances 1 and 0
    assert mean_ild(ranked, 2, vectors) == pytest.approx(0.5)
    index = {pid: i for i, pid in enumerate(vectors)}
    assert mean_ild(ranked, 2, (index, np.stack(list(vectors.values())))) == pytest.approx(0.5)
    assert mean_ild(np.array([[1, 2, 3]]), 3, vectors) == pytest.approx(2 / 3)


def test_category_fallback_vectors_grade_coarse_and_fine() -> None:
    vectors = category_vectors([item(1, "top", "shirt"), item(2, "top", "tee"), item(3, "bottom", "skirt")])
    assert mean_ild(np.array([[1, 2]]), 2, vectors) == pytest.approx(0.5)
    assert mean_ild(np.array([[1, 3]]), 2, vectors) == pytest.approx(1.0)


# --- rankers ---


def toy_split() -> tuple[InteractionLog, Split]:
    # 1 is bought by everyone; whoever buys 2 buys 3 next.
    seqs = {f"u{i}": [1, 2, 3] if i % 2 else [1, 4, 5] for i in range(8)}
    log = log_of(seqs, n_items=7)
    return log, Split(train=log.events, tests=[], cold_items=frozenset({7}), cold_tests=[])


def test_popularity_ranks_by_training_counts_minus_history() -> None:
    log, split = toy_split()
    pop = Popularity()
    pop.fit(log, split)
    ranked = pop.rank([TestCase("x", [4], 5), TestCase("y", [1], 2)], 3)
    assert ranked[0].tolist() == [1, 2, 3] and ranked[1].tolist() == [2, 3, 4]
    assert pop.rank([], 3).shape == (0, 3)


def test_item_knn_follows_co_occurrence_then_popularity() -> None:
    log, split = toy_split()
    knn = ItemKNN()
    knn.fit(log, split)
    ranked = knn.rank([TestCase("x", [1, 2], 3), TestCase("y", [6], 1)], 3)
    assert ranked[0][0] == 3 and not {1, 2} & set(ranked[0].tolist())
    assert ranked[1].tolist() == [1, 2, 3]  # 6 co-occurs with nothing: popularity fills


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Two torch threads on this shared 2-core machine run the tiny model ~8x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_sasrec_learns_a_cycle_and_never_recommends_unseen_items() -> None:
    cycle = [1, 2, 3, 4, 5, 6]
    seqs = {f"u{i}": [cycle[(i + t) % 6] for t in range(12)] for i in range(24)}
    log = log_of(seqs, n_items=8)  # 7 and 8: in the catalog, never interacted
    split = Split(train=log.events, tests=[], cold_items=frozenset({7, 8}), cold_tests=[])
    model = SASRec(epochs=40, dim=16, max_len=8, batch=32, lr=5e-3)
    model.fit(log, split)
    assert model.losses[-1] < model.losses[0]
    ranked = model.rank([TestCase("x", [1, 2, 3], 4), TestCase("y", [4, 5], 6)], 5)
    assert ranked[:, 0].tolist() == [4, 6]
    assert not {7, 8} & set(ranked.ravel().tolist())
    # 8 items - 3 history - 2 never seen = 3 to offer; the rest is padding
    assert (ranked[0, 3:] == -1).all() and (ranked[0, :3] != -1).all()


# --- the data loaders, on fixtures ---


def test_hm_log_joins_transactions_to_known_articles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.datasets import hm_log
    from tests.test_datasets import write_hm

    monkeypatch.setenv("TAILOR_RULES_ZERO_SHOT", "false")  # no MiniLM needed for this
    write_hm(tmp_path)
    rows = [
        ("2019-01-02", "c1", "0108775015"),
        ("2019-01-01", "c1", "0110065001"),
        ("2019-01-01", "c2", "0999999999"),  # no attributes: dropped
        ("2019-01-03", "c2", "0111586001"),
    ]
    with (tmp_path / "transactions.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("t_dat", "customer_id", "article_id", "price", "sales_channel_id")])
        csv.writer(fh).writerows([(*r, "0.01", "2") for r in rows])
    (tmp_path / "customers.csv").write_text("customer_id,age\nc1,34.0\nc2,\n")
    log = hm_log(folder=tmp_path)
    assert [(e.user_id, e.product_id, e.kind) for e in log.events] == [
        ("c1", 108775015, "purchase"),
        ("c1", 110065001, "purchase"),
        ("c2", 111586001, "purchase"),
    ]
    assert log.events[1].ts < log.events[0].ts  # by date, not by row
    assert sorted(it.product_id for it in log.items) == [108775015, 110065001, 111586001]
    assert log.profiles["c1"].age == 34.0 and log.profiles["c2"].age is None
    assert len(hm_log(max_users=1, folder=tmp_path).events) == 2


def test_movielens_log_turns_ratings_into_clicks(tmp_path: Path) -> None:
    from streams.datasets import movielens_log

    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n2,Heat (1995),Action\n")
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,4.0,50\n1,1,3.0,50\n2,3,5.0,9\n")
    log = movielens_log(tmp_path)
    assert [(e.user_id, e.product_id, e.kind) for e in log.events] == [("1", 2, "click"), ("1", 1, "click")]
    assert log.events[0].ts < log.events[1].ts  # same second: row order breaks the tie
    assert log.profiles == {} and len(log.items) == 2


def test_the_item_tower_cache_key_changes_with_the_content() -> None:
    from bench.eval_towers import content_key

    items = [item(1), item(2)]
    assert content_key(items) == content_key([item(1), item(2)])
    with_era = items[0].model_copy(update={"std": {"era": ["1995-1999"]}})
    assert content_key([with_era, items[1]]) != content_key(items)  # a new STD attribute: another tower


def test_paired_bootstrap_tells_a_real_difference_from_noise() -> None:
    from models.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    a = (rng.random(500) < 0.3).astype(float)
    mean, lo, hi = paired_bootstrap(a, a)
    assert (mean, lo, hi) == (0.0, 0.0, 0.0)  # the same hits: no difference at all
    better = np.maximum(a, (rng.random(500) < 0.2).astype(float))  # a's hits and more
    mean, lo, hi = paired_bootstrap(better, a)
    assert 0 < lo < mean < hi
    one_case = a.copy()
    one_case[np.argmin(a)] = 1.0  # one more hit in 500: within the noise
    assert paired_bootstrap(one_case, a)[1] <= 0.0


def test_rows_of_one_shared_fit_all_report_its_time() -> None:
    from bench.eval import run_row

    class Shared(Popularity):
        """A row of a system fitted once for several rows: its own fit is instant."""

        fit_seconds = 123.0

    log = log_of(SEQS)
    split = leave_last_out(log)
    assert run_row(Shared(), log, split).fit_s == 123.0
    own = run_row(Popularity(), log, split).fit_s  # no shared system: the measured time
    assert 0.0 <= own < 123.0
