"""Item tower training, the seeds' two stages.

Stage 1 (seed-b): SimCSE. Two augmented views of each item (feature dropout + title token
masking); NT-Xent over the 512-d head output with in-batch negatives.
Stage 2 (seed-a): hierarchical metric learning. Batches of sibling fine categories under
one coarse category; triplet margin loss with a miner for hard negatives on the final
128-d vector (fine labels) plus a lighter coarse-level term; the adapter learns fastest.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from pytorch_metric_learning import losses, miners
from tqdm import tqdm

from models.augment import view
from models.encoder import ItemEncoder, ItemInput
from models.item_tower import ItemTower, TowerConfig
from models.registry import save_weights
from models.tokenizer import title_vocab_size
from models.vocab import ReVocab, StdVocab


class TrainConfig(BaseModel):
    simcse_epochs: int = 30
    triplet_epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_stage2: float = 3e-4
    temperature: float = 0.1
    feature_dropout: float = 0.25
    token_mask: float = 0.2
    re_block_dropout: float = 0.2  # share of views with no RE at all (STD-only products)
    margin: float = 0.2
    coarse_weight: float = 0.5
    # Stage 2 keeps a SimCSE term, so items do not collapse onto their category centre
    # and the fine detail (cashmere, navy, belted) still separates items of one category.
    simcse_weight_stage2: float = 0.5
    seed: int = 0


class TrainHistory(BaseModel):
    simcse: list[float] = Field(default_factory=list)  # mean loss per epoch
    triplet: list[float] = Field(default_factory=list)
    seconds: float = 0.0


def _seed_all(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainedTower:
    """A trained tower with the two vocabularies its tables index (ship them together)."""

    tower: ItemTower
    std_vocab: StdVocab
    re_vocab: ReVocab
    history: TrainHistory

    def encoder(self, version: str = "eval") -> ItemEncoder:
        return ItemEncoder(self.tower, self.std_vocab, self.re_vocab, version)


def new_tower(std_vocab: StdVocab, re_vocab: ReVocab, tower_cls: type[ItemTower] = ItemTower) -> ItemTower:
    cfg = TowerConfig(std_size=len(std_vocab), re_size=len(re_vocab) + 64, title_size=title_vocab_size())
    tower = tower_cls(cfg)
    tower.grow_re([(i, t) for i, t in enumerate(re_vocab.tokens) if i >= 2])  # rows from term text
    return tower


def _labels(values: Sequence[str]) -> torch.Tensor:
    index = {v: i for i, v in enumerate(sorted(set(values)))}
    return torch.tensor([index[v] for v in values])


def _simcse(
    enc: ItemEncoder, items: Sequence[ItemInput], cfg: TrainConfig, gen: torch.Generator, log: Callable[[str], None]
) -> list[float]:
    tower = enc.tower
    loss_fn = losses.NTXentLoss(temperature=cfg.temperature)
    opt = torch.optim.AdamW(tower.parameters(), lr=cfg.lr, weight_decay=1e-4)
    history = []
    for _ in tqdm(range(cfg.simcse_epochs), desc="stage 1 SimCSE", leave=False):
        order = torch.randperm(len(items), generator=gen).tolist()
        epoch = []
        for start in range(0, len(order) - 1, cfg.batch_size):
            batch = [items[i] for i in order[start : start + cfg.batch_size]]
            if len(batch) < 2:
                continue
            std, re, title = enc.tensors(batch)
            z1 = tower.embed512(*view(std, re, title, cfg.feature_dropout, cfg.token_mask, gen, cfg.re_block_dropout))
            z2 = tower.embed512(*view(std, re, title, cfg.feature_dropout, cfg.token_mask, gen, cfg.re_block_dropout))
            ids = torch.arange(len(batch))
            loss = loss_fn(torch.cat([z1, z2]), torch.cat([ids, ids.clone()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch.append(loss.item())
        history.append(float(np.mean(epoch)))
    log(f"SimCSE loss {history[0]:.3f} -> {history[-1]:.3f}")
    return history


def _triplet(
    enc: ItemEncoder, items: Sequence[ItemInput], cfg: TrainConfig, gen: torch.Generator, log: Callable[[str], None]
) -> list[float]:
    from models.sampler import HierarchicalBatchSampler

    tower = enc.tower
    fine = _labels([f"{it.coarse}/{it.fine}" for it in items])
    coarse = _labels([it.coarse for it in items])
    sampler = HierarchicalBatchSampler(
        [it.coarse for it in items], [it.fine for it in items], cfg.batch_size, seed=cfg.seed
    )
    loss_fn = losses.TripletMarginLoss(margin=cfg.margin)
    ntxent = losses.NTXentLoss(temperature=cfg.temperature)
    miner = miners.TripletMarginMiner(margin=cfg.margin, type_of_triplets="semihard")
    adapter = list(tower.adapter.parameters())
    backbone = [p for n, p in tower.named_parameters() if not n.startswith("adapter.")]
    opt = torch.optim.AdamW(
        [{"params": adapter, "lr": cfg.lr}, {"params": backbone, "lr": cfg.backbone_lr_stage2}], weight_decay=1e-4
    )
    history = []
    for _ in tqdm(range(cfg.triplet_epochs), desc="stage 2 triplet", leave=False):
        epoch = []
        for idx in sampler:
            std, re, title = enc.tensors([items[i] for i in idx])
            z = tower(std, re, title)
            f, c = fine[idx], coarse[idx]
            loss = loss_fn(z, f, miner(z, f)) + cfg.coarse_weight * loss_fn(z, c, miner(z, c))
            if cfg.simcse_weight_stage2:
                z2 = tower(*view(std, re, title, cfg.feature_dropout, cfg.token_mask, gen, cfg.re_block_dropout))
                ids = torch.arange(len(idx))
                loss = loss + cfg.simcse_weight_stage2 * ntxent(torch.cat([z, z2]), torch.cat([ids, ids.clone()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch.append(loss.item())
        history.append(float(np.mean(epoch)))
    log(f"triplet loss {history[0]:.3f} -> {history[-1]:.3f}")
    return history


def _checkpoint(tower: ItemTower, directory: Path | None, stage: str) -> None:
    """The weights after a stage (safetensors), so a long run's first stage is not lost and
    stage 1 alone can be inspected or reused."""
    if directory is not None:
        save_weights(tower, directory / f"{stage}.safetensors")


def training_vocabs(items: Sequence[ItemInput]) -> tuple[StdVocab, ReVocab]:
    """The default STD vocabulary extended with the catalog's STD values (and its category
    hierarchy), and an RE vocabulary of every term the catalog uses."""
    blocks = [{**it.std, "coarse": [it.coarse], "fine": [it.fine]} for it in items]
    std_vocab, re_vocab = StdVocab.default().extended(blocks), ReVocab()
    for it in items:
        re_vocab.encode(it.re, grow=True)
    return std_vocab, re_vocab


def train_item_tower(
    items: Sequence[ItemInput],
    cfg: TrainConfig | None = None,
    log: Callable[[str], None] = print,
    tower_cls: type[ItemTower] = ItemTower,
    checkpoint_dir: Path | None = None,
) -> TrainedTower:
    """Train from enriched items (stage 1 SimCSE, then stage 2 hierarchical triplet).
    ``tower_cls`` swaps the architecture (the benchmark's ablations) under the same recipe."""
    cfg = cfg or TrainConfig()
    gen = _seed_all(cfg.seed)
    std_vocab, re_vocab = training_vocabs(items)
    tower = new_tower(std_vocab, re_vocab, tower_cls)
    enc = ItemEncoder(tower, std_vocab, re_vocab, "training")
    tower.train()
    t0 = time.perf_counter()
    history = TrainHistory()
    if cfg.simcse_epochs:
        history.simcse = _simcse(enc, items, cfg, gen, log)
        _checkpoint(tower, checkpoint_dir, "stage1_simcse")
    if cfg.triplet_epochs and len({it.fine for it in items}) > 1:
        history.triplet = _triplet(enc, items, cfg, gen, log)
        _checkpoint(tower, checkpoint_dir, "stage2_triplet")
    history.seconds = time.perf_counter() - t0
    return TrainedTower(tower.eval(), std_vocab, re_vocab, history)
