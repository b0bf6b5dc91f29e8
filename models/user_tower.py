"""User tower (seed-b Stage 2, seed-a "User Tower"): three inputs fused into one 128-d
vector in the FROZEN item space, so retrieval is one inner-product search in Milvus.

  behaviour: the item vectors of the sequence (frozen) + position (newest = 0) + recency
             bucket (log2 hours ago) + kind (click/cart/purchase) -> transformer encoder
             -> the newest position's output (it has attended to the whole sequence)
  context:   a text (cart concept, query) embedded by the item tower as a pseudo item
             -> linear; absent -> a learned "no context" vector
  profile:   height, weight, age z-scored with the training statistics; a missing value is
             0 plus a "missing" flag, so a user without a profile is just another input
  fusion:    concat -> MLP -> 128, plus a residual from the recency-weighted mean of the
             sequence (what the walking skeleton served), then L2 norm
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

KINDS = {"click": 1, "cart": 2, "purchase": 3}
PROFILE_FIELDS = ("height_cm", "weight_kg", "age")
RECENCY_BUCKETS = 16


class ProfileStats(BaseModel):
    """Training-set mean/std per profile field (z-scoring at serve time uses the same)."""

    mean: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(PROFILE_FIELDS, 0.0))
    std: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(PROFILE_FIELDS, 1.0))

    @classmethod
    def fit(cls, rows: Sequence[dict[str, float | None]]) -> ProfileStats:
        mean, std = {}, {}
        for f in PROFILE_FIELDS:
            values = np.array([r[f] for r in rows if r.get(f) is not None], dtype=np.float64)
            mean[f] = float(values.mean()) if len(values) else 0.0
            std[f] = float(values.std()) if len(values) > 1 and values.std() > 0 else 1.0
        return cls(mean=mean, std=std)

    def features(self, row: dict[str, float | None] | None) -> list[float]:
        """z-scores then missing flags: ``[z_h, z_w, z_a, miss_h, miss_w, miss_a]``."""
        row = row or {}
        z = [0.0 if row.get(f) is None else (float(row[f]) - self.mean[f]) / self.std[f] for f in PROFILE_FIELDS]
        missing = [1.0 if row.get(f) is None else 0.0 for f in PROFILE_FIELDS]
        return [max(-5.0, min(5.0, v)) for v in z] + missing


class UserTowerConfig(BaseModel):
    dim: int = 128  # the item space
    heads: int = 4
    layers: int = 2
    max_len: int = 30  # the transformer's window; the sequence mean residual sees no more either
    hidden: int = 256
    dropout: float = 0.1
    profile: ProfileStats = Field(default_factory=ProfileStats)


@dataclass
class UserState:
    """One user's inputs: ``vectors`` oldest -> newest (n, dim) with the same-length
    ``kinds`` and ``hours_ago``; ``context`` a (dim,) vector or None."""

    vectors: np.ndarray
    kinds: list[str]
    hours_ago: list[float]
    context: np.ndarray | None = None
    profile: dict[str, float | None] | None = None


def recency_bucket(hours: float) -> int:
    return min(RECENCY_BUCKETS - 1, int(math.log2(1.0 + max(0.0, hours))))


class UserBatch(BaseModel, arbitrary_types_allowed=True):
    seq: torch.Tensor  # (B, L, dim), right-aligned: the newest item is at index L-1
    pad: torch.Tensor  # (B, L) True where empty
    kind: torch.Tensor  # (B, L)
    recency: torch.Tensor  # (B, L)
    context: torch.Tensor  # (B, dim)
    has_context: torch.Tensor  # (B, 1)
    profile: torch.Tensor  # (B, 2 * len(PROFILE_FIELDS))


def collate(states: Sequence[UserState], cfg: UserTowerConfig) -> UserBatch:
    b, length, d = len(states), cfg.max_len, cfg.dim
    seq = torch.zeros(b, length, d)
    pad = torch.ones(b, length, dtype=torch.bool)
    kind = torch.zeros(b, length, dtype=torch.long)
    recency = torch.zeros(b, length, dtype=torch.long)
    context = torch.zeros(b, d)
    has_context = torch.zeros(b, 1)
    for i, s in enumerate(states):
        n = min(length, len(s.vectors))
        if n:
            seq[i, length - n :] = torch.from_numpy(np.asarray(s.vectors[-n:], dtype=np.float32))
            pad[i, length - n :] = False
            kind[i, length - n :] = torch.tensor([KINDS.get(k, 1) for k in s.kinds[-n:]])
            recency[i, length - n :] = torch.tensor([recency_bucket(h) for h in s.hours_ago[-n:]])
        if s.context is not None:
            context[i] = torch.from_numpy(np.asarray(s.context, dtype=np.float32))
            has_context[i] = 1.0
    profile = torch.tensor([cfg.profile.features(s.profile) for s in states], dtype=torch.float32)
    return UserBatch(
        seq=seq, pad=pad, kind=kind, recency=recency, context=context, has_context=has_context, profile=profile
    )


class UserTower(nn.Module):
    def __init__(self, cfg: UserTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.position = nn.Embedding(cfg.max_len, d)  # index 0 = newest
        self.kind = nn.Embedding(len(KINDS) + 1, d, padding_idx=0)
        self.recency = nn.Embedding(RECENCY_BUCKETS, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))  # the slot a user with no history still has
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, cfg.hidden, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.context = nn.Linear(d, d)
        self.no_context = nn.Parameter(torch.zeros(d))
        self.profile = nn.Sequential(nn.Linear(2 * len(PROFILE_FIELDS), 32), nn.GELU())
        self.fuse = nn.Sequential(
            nn.Linear(3 * d + 32, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, d)
        )
        self.mean_gate = nn.Parameter(torch.tensor(1.0))  # how much of the plain sequence mean to keep

    def behaviour(self, batch: UserBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoded newest slot, recency-weighted mean of the raw item vectors)."""
        b, length, _ = batch.seq.shape
        positions = torch.arange(length - 1, -1, -1, device=batch.seq.device)  # newest -> 0
        x = batch.seq + self.position(positions) + self.kind(batch.kind) + self.recency(batch.recency)
        x = torch.cat([x, self.cls.expand(b, 1, -1)], dim=1)  # the CLS slot sits after the newest item
        pad = torch.cat([batch.pad, torch.zeros(b, 1, dtype=torch.bool, device=batch.pad.device)], dim=1)
        encoded = self.encoder(x, src_key_padding_mask=pad)[:, -1]
        weights = (~batch.pad).float() * 0.9 ** positions.float()
        mean = (batch.seq * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp(min=1e-6)
        return encoded, mean

    def forward(self, batch: UserBatch) -> torch.Tensor:
        encoded, mean = self.behaviour(batch)
        ctx = batch.has_context * self.context(batch.context) + (1 - batch.has_context) * self.no_context
        fused = self.fuse(torch.cat([encoded, ctx, mean, self.profile(batch.profile)], dim=-1))
        return F.normalize(fused + self.mean_gate * mean + batch.has_context * batch.context, dim=-1)

    @torch.inference_mode()
    def encode(self, states: Sequence[UserState]) -> np.ndarray:
        was_training = self.training
        if was_training:  # train()/eval() walk every submodule: only when it changes something
            self.eval()
        out = self(collate(states, self.cfg)).numpy().astype(np.float32)
        if was_training:
            self.train()
        return out
