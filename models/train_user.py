"""User tower training: next-item prediction against the FROZEN item vectors.

Every prefix of every training sequence is one example (history -> next item). Loss:
InfoNCE / sampled softmax, the in-batch targets plus uniformly sampled catalog items as
negatives (accidental hits masked). The item tower is not touched: its vectors are inputs
and targets, so the user vector lands in the space Milvus already indexes.

Context text is simulated: with probability ``context_rate`` an example carries the
target's category as its "query" (what a shopper types), so the context branch learns to
steer; the rest carry none, which is what most requests look like.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from tqdm import tqdm

from models.user_tower import ProfileStats, UserState, UserTower, UserTowerConfig, collate


class UserTrainConfig(BaseModel):
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.07
    sampled_negatives: int = 512
    context_rate: float = 0.2
    max_examples_per_user: int = 40  # long MovieLens histories do not drown the short ones
    seed: int = 0


class UserTrainHistory(BaseModel):
    loss: list[float] = Field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Step:
    """One interaction of a user's sequence."""

    product_id: int
    ts: float  # seconds
    kind: str = "click"


@dataclass
class Example:
    user_id: str
    history: list[Step]
    target: int


def examples(sequences: dict[str, list[Step]], max_len: int, per_user: int, rng: random.Random) -> list[Example]:
    out = []
    for user, seq in sequences.items():
        idx = list(range(1, len(seq)))
        if len(idx) > per_user:
            idx = sorted(rng.sample(idx, per_user))
        out.extend(Example(user, seq[max(0, t - max_len) : t], seq[t].product_id) for t in idx)
    return out


def state_of(
    history: Sequence[Step],
    vectors: dict[int, np.ndarray],
    now: float,
    profile: dict[str, float | None] | None = None,
    context: np.ndarray | None = None,
) -> UserState:
    """A user's tower input from their steps (items without a vector are skipped)."""
    known = [s for s in history if s.product_id in vectors]
    return UserState(
        vectors=np.stack([vectors[s.product_id] for s in known]) if known else np.zeros((0, 128), np.float32),
        kinds=[s.kind for s in known],
        hours_ago=[(now - s.ts) / 3600.0 for s in known],
        context=context,
        profile=profile,
    )


def train_user_tower(
    sequences: dict[str, list[Step]],
    vectors: dict[int, np.ndarray],
    profiles: dict[str, dict[str, float | None]],
    context_of: Callable[[int], np.ndarray | None] | None = None,
    cfg: UserTrainConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[UserTower, UserTrainHistory]:
    cfg = cfg or UserTrainConfig()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    tower_cfg = UserTowerConfig(profile=ProfileStats.fit(list(profiles.values())))
    model = UserTower(tower_cfg)
    data = [e for e in examples(sequences, tower_cfg.max_len, cfg.max_examples_per_user, rng) if e.target in vectors]
    ids = np.array(sorted(vectors))
    catalog = torch.from_numpy(np.stack([vectors[i] for i in ids]).astype(np.float32))
    index = {int(p): i for i, p in enumerate(ids)}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    history = UserTrainHistory()
    start = time.perf_counter()
    log(f"user tower: {len(data)} next-item examples from {len(sequences)} users, {len(ids)} items")
    for epoch in range(cfg.epochs):
        rng.shuffle(data)
        losses = []
        bar = tqdm(range(0, len(data), cfg.batch_size), desc=f"user tower {epoch + 1}/{cfg.epochs}", leave=False)
        for lo in bar:
            batch = data[lo : lo + cfg.batch_size]
            loss = _step(model, opt, batch, vectors, profiles, context_of, catalog, index, cfg, rng)
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.3f}")
        history.loss.append(float(np.mean(losses)) if losses else 0.0)
        log(f"user tower epoch {epoch + 1}: InfoNCE {history.loss[-1]:.4f}")
    history.seconds = time.perf_counter() - start
    return model.eval(), history


def _step(
    model: UserTower,
    opt: torch.optim.Optimizer,
    batch: list[Example],
    vectors: dict[int, np.ndarray],
    profiles: dict[str, dict[str, float | None]],
    context_of: Callable[[int], np.ndarray | None] | None,
    catalog: torch.Tensor,
    index: dict[int, int],
    cfg: UserTrainConfig,
    rng: random.Random,
) -> float:
    states = []
    for e in batch:
        now = e.history[-1].ts if e.history else 0.0
        ctx = context_of(e.target) if context_of and rng.random() < cfg.context_rate else None
        states.append(state_of(e.history, vectors, now, profiles.get(e.user_id), ctx))
    users = model(collate(states, model.cfg))
    target_rows = torch.tensor([index[e.target] for e in batch])
    sampled = torch.randint(0, len(catalog), (cfg.sampled_negatives,))
    rows = torch.cat([target_rows, sampled])
    logits = users @ catalog[rows].T / cfg.temperature
    # Mask accidental hits: a candidate column that IS this row's target (other than the
    # diagonal) must not count as a negative.
    hit = rows.unsqueeze(0) == target_rows.unsqueeze(1)
    hit[torch.arange(len(batch)), torch.arange(len(batch))] = False
    logits = logits.masked_fill(hit, float("-inf"))
    loss = F.cross_entropy(logits, torch.arange(len(batch)))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return float(loss.item())
