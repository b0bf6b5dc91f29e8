"""SASRec (Kang & McAuley 2018), ID only: the sequential collaborative signal of a model
version, next to co-occurrence. It learns "what comes after this sequence" from the
interaction order alone, which neither the frozen content space nor an order-free
co-occurrence table express (MovieLens: 0.099 Recall@10 alone, item-kNN 0.087).

It serves DeepFM as two dense inputs per candidate (``features``: the score, the
"known" flag), and ``bench.baselines`` as the ID-only row. An item seen in no training
sequence has no embedding row: it is "unknown" (as for co-occurrence), and ranked by
content.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

WEIGHTS, CONFIG = "sasrec.safetensors", "sasrec.json"


class SASRecConfig(BaseModel):
    # epochs and lr from a validation split of MovieLens (the users' last training items):
    # Recall@10 0.077 after 20 epochs, 0.10 after 40 at lr 3e-3; lr 1e-3 needs ~70.
    epochs: int = 40
    dim: int = 64
    max_len: int = 50
    layers: int = 2
    dropout: float = 0.2
    batch: int = 128
    lr: float = 3e-3
    negatives: int = 1024
    seed: int = 0


class SASRecNet(nn.Module):
    """Item embedding + learned position, causal pre-norm transformer layers, and the item
    embedding table reused as the output layer (scores = hidden . item)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # row 0 = padding
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, nhead=2, dim_feedforward=cfg.dim * 2, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        # Small rows: the table is also the output layer, and N(0, 1) rows would start the
        # logits at ~|h| * 8 (a loss of 50 instead of log(n_items)).
        nn.init.normal_(self.items.weight, std=cfg.dim**-0.5)
        nn.init.normal_(self.positions.weight, std=cfg.dim**-0.5)
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


def left_pad(rows: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        row = list(row)[-length:]
        if row:
            out[i, length - len(row) :] = torch.tensor(row)
    return out


def windows(seq: list[int], length: int) -> list[list[int]]:
    """Non-overlapping windows of ``length + 1`` (input + shifted target) from the end, so
    every transition of a long history is trained on once per epoch."""
    return [seq[max(0, end - length - 1) : end] for end in range(len(seq), 1, -length)]


class SASRec:
    """A fitted SASRec over ``vocab`` (the product ids of its rows 1..n, in order)."""

    def __init__(self, cfg: SASRecConfig, vocab: Sequence[int], net: SASRecNet | None = None) -> None:
        self.cfg = cfg
        self.vocab = np.asarray(vocab, dtype=np.int64)
        self.row = {int(p): i + 1 for i, p in enumerate(self.vocab)}
        self.net = net or SASRecNet(len(self.vocab), cfg)
        self.losses: list[float] = []

    @classmethod
    def fit(cls, sequences: Sequence[Sequence[int]], cfg: SASRecConfig | None = None, desc: str = "SASRec") -> SASRec:
        """Next-item training on every transition of ``sequences`` (product ids, oldest first)."""
        cfg = cfg or SASRecConfig()
        torch.manual_seed(cfg.seed)
        model = cls(cfg, sorted({int(p) for seq in sequences for p in seq}))
        wins = [w for seq in sequences for w in windows([model.row[int(p)] for p in seq], cfg.max_len)]
        if wins:
            inputs = left_pad([w[:-1] for w in wins], cfg.max_len)
            targets = left_pad([w[1:] for w in wins], cfg.max_len)
            model._train(inputs, targets, desc)
        model.net.eval()
        return model

    def _train(self, inputs: torch.Tensor, targets: torch.Tensor, desc: str) -> None:
        cfg = self.cfg
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        self.net.train()
        bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False)
        for _ in bar:
            total, steps, started = 0.0, 0, time.perf_counter()
            for idx in torch.randperm(len(inputs), generator=gen).split(cfg.batch):
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
        if n_items <= self.cfg.negatives:
            return nn.functional.cross_entropy(hidden @ table[1:].T, wanted - 1)
        sampled = torch.randint(1, n_items + 1, (self.cfg.negatives,), generator=gen)
        positive = (hidden * table[wanted]).sum(-1, keepdim=True)
        negative = (hidden @ table[sampled].T).masked_fill(sampled[None] == wanted[:, None], -torch.inf)
        logits = torch.cat([positive, negative], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))

    @torch.inference_mode()
    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(histories), len(vocab)) next-item scores, column j = ``vocab[j]``; history
        items the model has no row for are skipped (an empty history scores from the
        positions alone)."""
        if self.net.training:
            self.net.eval()
        seq = left_pad([[self.row[int(p)] for p in h if int(p) in self.row] for h in histories], self.cfg.max_len)
        last = self.net(seq)[:, -1]
        return (last @ self.net.items.weight[1:].T).numpy()

    def candidates(self, scores: np.ndarray, n: int, exclude: Collection[int] = ()) -> list[int]:
        """The ``n`` best product ids by ``scores`` (a row of ``scores``), none of ``exclude``."""
        take = min(n + len(exclude), len(scores))
        if take <= 0:
            return []
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [p for p in self.vocab[top].tolist() if p not in exclude][:n]

    def features(self, scores: np.ndarray, product_ids: Sequence[int]) -> np.ndarray:
        """(n, 2) per candidate: its score (a row of ``scores``), known flag (the item has a
        row); unknown items get (0, 0)."""
        out = np.zeros((len(product_ids), 2), dtype=np.float32)
        for i, p in enumerate(product_ids):
            r = self.row.get(int(p))
            if r is not None:
                out[i] = (scores[r - 1], 1.0)
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file({**state, "vocab": torch.from_numpy(self.vocab)}, str(folder / WEIGHTS))
        (folder / CONFIG).write_text(self.cfg.model_dump_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SASRec:
        cfg = SASRecConfig.model_validate(json.loads((folder / CONFIG).read_text(encoding="utf-8")))
        state = load_file(str(folder / WEIGHTS))
        model = cls(cfg, state.pop("vocab").numpy())
        model.net.load_state_dict(state)
        model.net.eval()
        return model
