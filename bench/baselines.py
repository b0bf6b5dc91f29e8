"""The baseline rows of bench/eval: popularity, item-kNN co-occurrence and an ID-only SASRec.

Every row is a ``Ranker``: fitted once on ``Split.train`` (plus whatever content the log has),
then asked for the top-k of each test case over the whole catalog (``log.items``), never
returning an item of the case's own history. None of these three knows an item it has
not seen bought or clicked, which is what the cold-start column is there to show.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.interactions import InteractionLog, Split, TestCase, train_sequences

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


class SASRecNet(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), ID only: item
    embedding + learned position, causal pre-norm transformer layers, and the item
    embedding table reused as the output layer (scores = hidden . item)."""

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.dim = dim
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0 = padding
        self.positions = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(
            dim, nhead=2, dim_feedforward=dim * 2, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        # Small rows: the table is also the output layer, and N(0, 1) rows would start the
        # logits at ~|h| * 8 (a loss of 50 instead of log(n_items)).
        nn.init.normal_(self.items.weight, std=dim**-0.5)
        nn.init.normal_(self.positions.weight, std=dim**-0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def _mask(self, seq: torch.Tensor) -> torch.Tensor:
        """True = may not attend. Causal, and no real position attends to padding; a padding
        position attends to itself so its softmax row is never empty (NaN)."""
        length = seq.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        blocked = causal[None] | (seq == 0)[:, None, :]
        blocked = blocked & ~torch.eye(length, dtype=torch.bool)[None]
        return blocked.repeat_interleave(self.encoder.layers[0].self_attn.num_heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, max_len) left-padded item rows -> (batch, max_len, dim) hidden states."""
        pos = torch.arange(seq.shape[1], device=seq.device)
        x = self.dropout(self.items(seq) * math.sqrt(self.dim) + self.positions(pos)[None])
        return self.norm(self.encoder(x, mask=self._mask(seq)))


def _left_pad(rows: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        row = list(row)[-length:]
        if row:
            out[i, length - len(row) :] = torch.tensor(row)
    return out


def _windows(seq: list[int], length: int) -> list[list[int]]:
    """Non-overlapping windows of ``length + 1`` (input + shifted target) from the end, so
    every transition of a long history is trained on once per epoch."""
    return [seq[max(0, end - length - 1) : end] for end in range(len(seq), 1, -length)]


class SASRec:
    """ID-only sequential baseline: next-item prediction with (sampled) softmax
    cross-entropy over the items seen in training. A cold item has no embedding row, so it is never
    recommended: the point of the cold-start column."""

    name = "SASRec (ID only)"

    def __init__(
        self,
        epochs: int = 40,
        dim: int = 64,
        max_len: int = 50,
        batch: int = 128,
        lr: float = 3e-3,
        negatives: int = 1024,
        seed: int = 0,
    ) -> None:
        # epochs and lr from a validation split of MovieLens (the users' last training items):
        # Recall@10 0.077 after 20 epochs, 0.10 after 40 at lr 3e-3; lr 1e-3 needs ~70.
        self.epochs, self.dim, self.max_len, self.batch, self.lr, self.seed = epochs, dim, max_len, batch, lr, seed
        self.negatives = negatives
        self.losses: list[float] = []

    def fit(self, log: InteractionLog, split: Split) -> None:
        torch.manual_seed(self.seed)
        self.catalog = Catalog(log)
        seqs = list(train_sequences(split).values())
        self.vocab = sorted({p for seq in seqs for p in seq if p in self.catalog.col})
        self.row = {p: i + 1 for i, p in enumerate(self.vocab)}
        windows = [w for seq in seqs for w in _windows([self.row[p] for p in seq if p in self.row], self.max_len)]
        self.net = SASRecNet(len(self.vocab), self.dim, self.max_len)
        pad = self.max_len
        self._train(_left_pad([w[:-1] for w in windows], pad), _left_pad([w[1:] for w in windows], pad))
        self.net.eval()

    def _train(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        self.net.train()
        bar = tqdm(range(self.epochs), desc="SASRec", unit="epoch", leave=False)
        for _ in bar:
            total, steps, started = 0.0, 0, time.perf_counter()
            for idx in torch.randperm(len(inputs), generator=gen).split(self.batch):
                loss = self._loss(inputs[idx], targets[idx], gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            self.losses.append(total / max(steps, 1))
            bar.set_postfix(loss=f"{self.losses[-1]:.3f}", s=f"{time.perf_counter() - started:.1f}")

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Next-item cross-entropy at every position that has a next item. Over the full
        catalog when it is small; else against ``negatives`` uniform items shared by the
        batch (the full 10k-item softmax costs ~2 s a step on two CPU cores). Uniform
        sampling has a constant logQ, so it needs no correction; a sampled item that is the
        position's own target is masked out."""
        real = targets > 0
        hidden, wanted = self.net(inputs)[real], targets[real]
        table = self.net.items.weight
        n_items = table.shape[0] - 1
        if n_items <= self.negatives:
            return nn.functional.cross_entropy(hidden @ table[1:].T, wanted - 1)
        sampled = torch.randint(1, n_items + 1, (self.negatives,), generator=gen)
        positive = (hidden * table[wanted]).sum(-1, keepdim=True)
        negative = (hidden @ table[sampled].T).masked_fill(sampled[None] == wanted[:, None], -torch.inf)
        logits = torch.cat([positive, negative], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))

    @torch.no_grad()
    def _scores(self, cases: Sequence[TestCase]) -> np.ndarray:
        seq = _left_pad([[self.row[p] for p in c.history if p in self.row] for c in cases], self.max_len)
        last = self.net(seq)[:, -1]
        item_scores = (last @ self.net.items.weight[1:].T).numpy()
        scores = np.full((len(cases), len(self.catalog)), -np.inf)
        scores[:, self.catalog.columns(self.vocab)] = item_scores  # unknown items stay -inf
        return scores

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray:
        parts = [self.catalog.top_k(self._scores(c), c, k) for c in _chunks(cases)]
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def baselines(quick: bool = False) -> list[Ranker]:
    """The interaction-only rows, in the table's order."""
    return [Popularity(), ItemKNN(), SASRec(epochs=3 if quick else 40)]
