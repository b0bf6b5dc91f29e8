"""Coarse-to-fine item tower (seed-a, stage 1 + head + adapter).

shared embeddings (64-d: STD table, growing RE table, title-token table)
  -> self-attention encoder for STD, another for RE + title tokens
  -> cross-attention: query = STD, key/value = RE + title  ("keep the coat, absorb cashmere")
  -> residual + LayerNorm -> masked mean pooling over STD positions
  -> deep residual pyramid head: 64 -> 256 -> residual blocks -> 512, L2 normalised
  -> metric-learning adapter -> final 128-d, L2 normalised
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn


class TowerConfig(BaseModel):
    std_size: int
    re_size: int
    title_size: int
    dim: int = 64
    heads: int = 4
    layers: int = 1
    max_title_tokens: int = 32
    hidden: int = 256
    res_blocks: int = 2
    head_out: int = 512
    out_dim: int = 128
    dropout: float = 0.1


def term_init(token: str, dim: int, scale: float = 1.0) -> torch.Tensor:
    """A fixed start vector for an RE term derived from its text, so a term gets the same
    row whatever id a worker gave it, and a restart reproduces the same vectors."""
    seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    gen = torch.Generator().manual_seed(seed & (2**63 - 1))
    return torch.randn(dim, generator=gen) * scale


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class PyramidHead(nn.Module):
    """Expand (64 -> 256), learn non-linear mixes in residual blocks, compress to 512."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.GELU())
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.res_blocks)])
        self.compress = nn.Linear(cfg.hidden, cfg.head_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.compress(self.blocks(self.expand(x))), dim=-1)


def _encoder(cfg: TowerConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.dim,
        cfg.heads,
        dim_feedforward=cfg.dim * 4,
        dropout=cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)


class ItemTower(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.std_emb = nn.Embedding(cfg.std_size, d, padding_idx=0)  # shared by all STD keys
        self.re_emb = nn.Embedding(cfg.re_size, d, padding_idx=0)  # grows at run time
        self.title_emb = nn.Embedding(cfg.title_size, d, padding_idx=0)
        self.title_pos = nn.Embedding(cfg.max_title_tokens, d)
        self.segment = nn.Embedding(3, d)  # 0 = STD, 1 = RE, 2 = title
        # Always-present key/value slot: an item with neither RE nor title still attends
        # to something (a fully masked attention row would give NaN).
        self.null_kv = nn.Parameter(torch.zeros(1, 1, d))
        self.std_encoder = _encoder(cfg)
        self.re_encoder = _encoder(cfg)
        self.cross = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = PyramidHead(cfg)
        self.adapter = nn.Sequential(
            nn.Linear(cfg.head_out, cfg.head_out), nn.GELU(), nn.Linear(cfg.head_out, cfg.out_dim)
        )

    def grow_re(self, new_rows: list[tuple[int, str]], init: dict[int, torch.Tensor] | None = None) -> None:
        """Make room for newly assigned RE ids and initialise their rows: from ``init``
        where given, else from the term's text hash."""
        if not new_rows:
            return
        need = max(i for i, _ in new_rows) + 1
        if need > self.re_emb.num_embeddings:
            size = max(need, int(self.re_emb.num_embeddings * 1.5) + 64)
            grown = nn.Embedding(size, self.cfg.dim, padding_idx=0)
            with torch.no_grad():
                grown.weight.zero_()
                grown.weight[: self.re_emb.num_embeddings] = self.re_emb.weight
            self.re_emb = grown
            self.cfg = self.cfg.model_copy(update={"re_size": size})
        with torch.no_grad():
            for i, token in new_rows:
                self.re_emb.weight[i] = init[i] if init and i in init else term_init(token, self.cfg.dim)

    def _kv(self, re_ids: torch.Tensor, title_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = re_ids.shape[0]
        re = self.re_emb(re_ids) + self.segment.weight[1]
        positions = torch.arange(title_ids.shape[1], device=title_ids.device).clamp(max=self.cfg.max_title_tokens - 1)
        title = self.title_emb(title_ids) + self.title_pos(positions) + self.segment.weight[2]
        null = self.null_kv.expand(batch, 1, -1)
        kv = torch.cat([null, re, title], dim=1)
        pad = torch.cat(
            [torch.zeros(batch, 1, dtype=torch.bool, device=re_ids.device), re_ids == 0, title_ids == 0], dim=1
        )
        return self.re_encoder(kv, src_key_padding_mask=pad), pad

    def pooled(self, std_ids: torch.Tensor, re_ids: torch.Tensor, title_ids: torch.Tensor) -> torch.Tensor:
        """The 64-d item summary before the head (masked mean over STD positions)."""
        std_pad = std_ids == 0
        std = self.std_encoder(self.std_emb(std_ids) + self.segment.weight[0], src_key_padding_mask=std_pad)
        kv, kv_pad = self._kv(re_ids, title_ids)
        refined, _ = self.cross(std, kv, kv, key_padding_mask=kv_pad, need_weights=False)
        fused = self.norm(std + refined)
        keep = (~std_pad).unsqueeze(-1).float()
        return (fused * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    def embed512(self, std_ids: torch.Tensor, re_ids: torch.Tensor, title_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(std_ids, re_ids, title_ids))

    def forward(self, std_ids: torch.Tensor, re_ids: torch.Tensor, title_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.adapter(self.embed512(std_ids, re_ids, title_ids)), dim=-1)
