"""The baseline rows of bench/eval: popularity, item-kNN co-occurrence and an ID-only SASRec.

Every row is a ``Ranker``: fitted once on ``Split.train`` (plus whatever content the log has),
then asked for the top-k of each test case over the whole catalog (``log.items``), never
returning an item of the case's own history. None of these three knows an item it has
not seen bought or clicked, which is what the cold-start column is there to show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.interactions import InteractionLog, Split, TestCase, train_sequences
from models.sasrec import SASRec as SASRecModel
from models.sasrec import SASRecConfig

CHUNK = 512  # test cases scored at once: bounds the (cases x catalog) score matrix


@runtime_checkable
class Ranker(Protocol):
    """One row of the evaluation table.

    ``rank`` returns (len(cases), k) product ids, best first, -1 where it has nothing left
    to offer. A ranker may also expose ``item_vectors: dict[int, np.ndarray]`` (content
    vectors of the catalog): bench/eval then measures every row's ILD with the first such
    table, so ILD compares across rows. Rows that share one fitted system may expose
    ``fit_seconds: float`` (that system's fit time): bench/eval reports it for each of
    them instead of the near-zero time their own ``fit`` took once the system was fitted.
    """

    name: str

    def fit(self, log: InteractionLog, split: Split) -> None: ...

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray: ...


class Catalog:
    """Product id <-> column of the score matrices every ranker fills."""

    def __init__(self, log: InteractionLog) -> None:
        self.ids = np.array(sorted({it.product_id for it in log.items}), dtype=np.int64)
        self.col = {int(pid): i for i, pid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def columns(self, product_ids: Sequence[int]) -> list[int]:
        return [self.col[p] for p in product_ids if p in self.col]

    def top_k(self, scores: np.ndarray, cases: Sequence[TestCase], k: int) -> np.ndarray:
        """Best ``k`` product ids per row of ``scores`` (cases x catalog), history excluded.
        Stable sort: ties go to the smaller product id, so every run ranks the same."""
        scores = scores.astype(np.float64, copy=True)
        for row, case in enumerate(cases):
            scores[row, self.columns(case.history)] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        picked = self.ids[order]
        picked[~np.isfinite(np.take_along_axis(scores, order, axis=1))] = -1
        if picked.shape[1] < k:  # a catalog smaller than k
            picked = np.pad(picked, ((0, 0), (0, k - picked.shape[1])), constant_values=-1)
        return picked


def _chunks(cases: Sequence[TestCase]) -> list[Sequence[TestCase]]:
    return [cases[i : i + CHUNK] for i in range(0, len(cases), CHUNK)]


def train_counts(split: Split, catalog: Catalog) -> np.ndarray:
    counts = np.zeros(len(catalog))
    for pid, n in Counter(e.product_id for e in split.train).items():
        if pid in catalog.col:
            counts[catalog.col[pid]] = n
    return counts


class Popularity:
    """Most-interacted items in training, the same list for everyone (minus their history)."""

    name = "popularity"

    def fit(self, log: InteractionLog, split: Split) -> None:
        self.catalog = Catalog(log)
        self.counts = train_counts(split, self.catalog)

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray:
        parts = [self.catalog.top_k(np.tile(self.counts, (len(c), 1)), c, k) for c in _chunks(cases)]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


class ItemKNN:
    """Item-item cosine over who interacted with what in training,
    sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|); a case scores each item by the similarity
    to its history, the item seen ``a`` steps before the last weighted ``decay ** a``
    (next items follow the latest taste). Items no history item co-occurs with come after,
    in popularity order."""

    name = "item-kNN"

    # 0.5 was best of 0.3-0.9 on a validation split (each user's last TRAINING item) of
    # both MovieLens and H&M; the test targets were not used to choose it.
    def __init__(self, decay: float = 0.5) -> None:
        self.decay = decay

    def fit(self, log: InteractionLog, split: Split) -> None:
        self.catalog = Catalog(log)
        seqs = train_sequences(split)
        # Dense user x item incidence: fine at these sizes (MovieLens small: 610 x 9.7k).
        self.users = np.zeros((len(seqs), len(self.catalog)), dtype=np.float32)
        for row, seq in enumerate(seqs.values()):
            self.users[row, self.catalog.columns(seq)] = 1.0
        self.norm = np.sqrt(self.users.sum(axis=0))
        self.counts = train_counts(split, self.catalog)

    def _history_weights(self, cases: Sequence[TestCase]) -> np.ndarray:
        weights = np.zeros((len(cases), len(self.catalog)), dtype=np.float32)
        for row, case in enumerate(cases):
            cols = self.catalog.columns(case.history)
            for age, col in enumerate(reversed(cols)):
                weights[row, col] += self.decay**age
        return weights / np.where(self.norm > 0, self.norm, 1.0)

    def _scores(self, cases: Sequence[TestCase]) -> np.ndarray:
        co = (self._history_weights(cases) @ self.users.T) @ self.users  # weighted co-occurrence
        sims = co / np.where(self.norm > 0, self.norm, 1.0)
        # No co-occurrence: below every real score, ordered by popularity in (-1, 0).
        fill = -1.0 + self.counts / (self.counts.max() + 1.0)
        return np.where(sims > 0, sims, fill)

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray:
        parts = [self.catalog.top_k(self._scores(c), c, k) for c in _chunks(cases)]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


class SASRec:
    """ID-only sequential baseline (``models.sasrec``, the model versions' own sequential
    signal): next-item prediction over the items seen in training. A cold item has no
    embedding row, so it is never recommended: the point of the cold-start column."""

    name = "SASRec (ID only)"

    def __init__(self, **cfg: Any) -> None:  # SASRecConfig's fields (epochs, dim, ...)
        self.cfg = SASRecConfig(**cfg)

    def fit(self, log: InteractionLog, split: Split) -> None:
        self.catalog = Catalog(log)
        seqs = [[p for p in seq if p in self.catalog.col] for seq in train_sequences(split).values()]
        self.model = SASRecModel.fit(seqs, self.cfg)

    @property
    def losses(self) -> list[float]:  # per epoch, for the tests and plots
        return self.model.losses

    def _scores(self, cases: Sequence[TestCase]) -> np.ndarray:
        item_scores = self.model.scores([c.history for c in cases])
        scores = np.full((len(cases), len(self.catalog)), -np.inf)
        scores[:, self.catalog.columns(self.model.vocab.tolist())] = item_scores  # unknown items stay -inf
        return scores

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray:
        parts = [self.catalog.top_k(self._scores(c), c, k) for c in _chunks(cases)]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def baselines(quick: bool = False) -> list[Ranker]:
    """The interaction-only rows, in the table's order."""
    return [Popularity(), ItemKNN(), SASRec(epochs=3 if quick else 40)]
