"""Item-item co-occurrence, learnt offline and shipped in the model version: the
collaborative signal a frozen content space cannot express ("who bought this also bought").

``CoOccurrence.fit`` keeps, per item seen in training, its ``top_n`` neighbours by
sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|) (U = the users who interacted with it, as
``bench.baselines.ItemKNN``). A user's history scores an item by
sum over history items h of decay**age(h) * sim(h, item), the latest item weighted most.

It serves two stages: a third candidate source (items co-occurring with the history, next
to the content ANN and popularity) and two DeepFM dense features per candidate (that score,
and "known": the item has a row, i.e. interactions). A new item has no row: it is reached
by content only, and DeepFM sees it as "unknown", not as "never co-occurs".

Training rows must not see their own future: ``own`` (the training user's items) is
taken out of the counts (leave-user-out), so a training target does not co-occur with
its own history only because that same user bought both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

FILE = "cooccurrence.npz"
BLOCK = 1024  # item rows per block of the co-occurrence product (densified to find the top-n)
# ... but at most this many dense cells per block (256 MB of float32): a 1M-item catalog
# then takes 64 rows at a time instead of a 4 GB block.
DENSE_CELLS = 64_000_000


@dataclass
class CoOccurrence:
    """Row r = item ``ids[r]``: ``neighbours[r]`` product ids (-1 = none), ``sims[r]``
    their cosine, ``users[r]`` how many users interacted with the item."""

    ids: np.ndarray
    neighbours: np.ndarray
    sims: np.ndarray
    users: np.ndarray
    decay: float = 0.5
    recent: int = 20  # history items that vote: with decay 0.5 older ones weigh < 1e-6
    row: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row = {int(p): i for i, p in enumerate(self.ids)}

    @classmethod
    def fit(cls, sequences: Mapping[str, Sequence[int]], top_n: int = 100, decay: float = 0.5) -> CoOccurrence:
        ids = np.array(sorted({p for seq in sequences.values() for p in seq}), dtype=np.int64)
        col = {int(p): i for i, p in enumerate(ids)}
        pairs = {(u, col[p]) for u, seq in enumerate(sequences.values()) for p in seq}
        users, items = (np.array(x, dtype=np.int64) for x in zip(*pairs, strict=True)) if pairs else ([], [])
        x = sparse.csr_matrix((np.ones(len(pairs), np.float32), (users, items)), shape=(len(sequences), len(ids)))
        counts = np.asarray(x.sum(axis=0)).ravel()
        xt = x.T.tocsr()
        n = min(top_n, max(len(ids) - 1, 1))
        neighbours = np.full((len(ids), n), -1, dtype=np.int64)
        sims = np.zeros((len(ids), n), dtype=np.float32)
        rows = max(1, min(BLOCK, DENSE_CELLS // max(len(ids), 1)))
        for lo in range(0, len(ids), rows):
            block = (xt[lo : lo + rows] @ x).toarray()
            block /= np.sqrt(counts[lo : lo + rows, None] * counts[None, :])
            block[np.arange(len(block)), np.arange(lo, lo + len(block))] = 0.0  # not its own neighbour
            neighbours[lo : lo + len(block)], sims[lo : lo + len(block)] = _top(block, ids, n)
        return cls(ids, neighbours, sims, counts.astype(np.float32), decay)

    def weights(self, history: Sequence[int]) -> dict[int, float]:
        """Each known history item's vote, decay**age from the latest (repeats add up)."""
        out: dict[int, float] = {}
        for age, p in enumerate(reversed(list(history)[-self.recent :])):
            if p in self.row:
                out[p] = out.get(p, 0.0) + self.decay**age
        return out

    def scores(self, history: Sequence[int], own: Collection[int] = ()) -> dict[int, float]:
        """Every item co-occurring with the history -> its score; ``own``: the items of the
        user whose history it is, left out of the counts (training rows only)."""
        out: dict[int, float] = {}
        for h, w in self.weights(history).items():
            r = self.row[h]
            keep = self.neighbours[r] >= 0
            nbrs, sims = self.neighbours[r][keep], self.sims[r][keep]
            if own:
                sims = self._leave_out(r, nbrs, sims, own)
            for p, s in zip(nbrs.tolist(), (w * sims).tolist(), strict=True):
                if s > 0:
                    out[p] = out.get(p, 0.0) + s
        return out

    def _leave_out(self, r: int, nbrs: np.ndarray, sims: np.ndarray, own: Collection[int]) -> np.ndarray:
        """The sims without one user who had item ``r`` and the neighbours in ``own``."""
        mine = np.array([p in own for p in nbrs.tolist()], dtype=np.float32)
        n_j = self.users[[self.row[p] for p in nbrs.tolist()]] if len(nbrs) else np.zeros(0, np.float32)
        n_h = self.users[r]
        shared = sims * np.sqrt(n_h * n_j) - mine
        denom = np.sqrt(np.maximum(n_h - 1.0, 0.0) * np.maximum(n_j - mine, 0.0))
        return np.where((shared > 0.5) & (denom > 0), shared / np.where(denom > 0, denom, 1.0), 0.0)

    def candidates(
        self,
        history: Sequence[int],
        n: int,
        exclude: Collection[int] = (),
        own: Collection[int] = (),
        scores: dict[int, float] | None = None,
    ) -> list[int]:
        """The ``n`` best-scoring product ids for the history, none of ``exclude``
        (``scores``: ``self.scores(history, own)`` when the caller has it already)."""
        scores = self.scores(history, own) if scores is None else scores
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [p for p, _ in ranked if p not in exclude][:n]

    def features(
        self,
        history: Sequence[int],
        product_ids: Sequence[int],
        own: Collection[int] = (),
        scores: dict[int, float] | None = None,
    ) -> np.ndarray:
        """(n, 2) per candidate: co-occurrence score with the history, known flag (the item
        has interactions; with ``own`` given, interactions of other users; ``scores`` as in
        ``candidates``)."""
        scores = self.scores(history, own) if scores is None else scores
        out = np.zeros((len(product_ids), 2), dtype=np.float32)
        for i, p in enumerate(product_ids):
            r = self.row.get(int(p))
            if r is not None and self.users[r] - (1.0 if p in own else 0.0) > 0:
                out[i] = (scores.get(int(p), 0.0), 1.0)
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (FILE + ".tmp.npz")
        np.savez(
            tmp,
            ids=self.ids,
            neighbours=self.neighbours,
            sims=self.sims,
            users=self.users,
            config=np.array([self.decay, self.recent], dtype=np.float64),
        )
        tmp.replace(folder / FILE)

    @classmethod
    def load(cls, folder: Path) -> CoOccurrence:
        with np.load(folder / FILE) as f:
            decay, recent = f["config"].tolist()
            return cls(f["ids"], f["neighbours"], f["sims"], f["users"], float(decay), int(recent))


def _top(block: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``n`` largest positive entries as (product ids, sims), best first."""
    top = np.argpartition(-block, n - 1, axis=1)[:, :n] if block.shape[1] > n else np.argsort(-block, axis=1)[:, :n]
    vals = np.take_along_axis(block, top, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    top, vals = np.take_along_axis(top, order, 1), np.take_along_axis(vals, order, 1)
    return np.where(vals > 0, ids[top], -1), np.where(vals > 0, vals, 0.0).astype(np.float32)
