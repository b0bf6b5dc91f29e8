"""Ablation of the item tower for the benchmark: the same embeddings and adapter, but no
attention and no pyramid: masked means of the STD, RE and title embeddings, concatenated,
through a plain MLP (seed-a's "simple concat" the cross-attention design argues against)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.item_tower import ItemTower, TowerConfig


def _masked_mean(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    keep = (ids != 0).unsqueeze(-1).float()
    return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class ConcatMLPTower(ItemTower):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__(cfg)
        # Drop what this ablation does not use, so its parameter count is honest.
        del self.std_encoder, self.re_encoder, self.cross, self.norm, self.head, self.null_kv
        self.mlp = nn.Sequential(nn.Linear(3 * cfg.dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.head_out))

    def embed512(self, std_ids: torch.Tensor, re_ids: torch.Tensor, title_ids: torch.Tensor) -> torch.Tensor:
        parts = [
            _masked_mean(self.std_emb(std_ids), std_ids),
            _masked_mean(self.re_emb(re_ids), re_ids),
            _masked_mean(self.title_emb(title_ids), title_ids),
        ]
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)
