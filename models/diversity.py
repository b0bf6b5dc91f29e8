"""Self-attention listwise reranker (seed-a "Diversity-Aware Serving").

It looks at the whole top-100 at once: every candidate is a token (its item vector, the
DeepFM score, the retrieval score), plus one user token; two transformer layers without
positions (a list is a set here) let each candidate see what else is on the list, so a
candidate that repeats many others can be scored down and a distinct one up. Trained
listwise: softmax cross-entropy of the clicked item against the rest of its list.

Selection then trades its scores against redundancy with the per-request lambda (MMR's
greedy rule, ``models.rerank.mmr``, with the mean similarity to the picks as redundancy),
so lambda = 1 is the learned order as is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from models.rerank import mmr


class DiversityConfig(BaseModel):
    dim: int = 64
    item_dim: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    # Scalars per candidate (``models.ranking.list_scores``): 10 = DeepFM logit + its pair
    # inputs (retrieval score, history similarity, popularity, co-occurrence, SASRec, known
    # flags); 8 = the same before SASRec; 2 = logit + retrieval score, the first versions.
    scores: int = 2
    # A linear term over every per-candidate scalar beside the DeepFM logit's ``keep``
    # (wide & deep): the co-occurrence score alone ordered MovieLens' candidates better than
    # DeepFM and the transformer did (Recall@10 0.085 vs 0.071 / 0.077), so the listwise
    # stage gets that order as a direct path and learns the rest as a residual. False:
    # versions trained before (their weights have no such term).
    wide: bool = False


@dataclass
class CandidateList:
    """One request's candidates: ``vectors`` (n, 128), ``scores`` (n, cfg.scores), column 0
    the DeepFM logit (``models.ranking.list_scores``); ``target`` the clicked index
    (training only)."""

    user: np.ndarray
    vectors: np.ndarray
    scores: np.ndarray
    target: int = -1


class SelfAttentionReranker(nn.Module):
    def __init__(self, cfg: DiversityConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiversityConfig()
        self.item = nn.Linear(cfg.item_dim + cfg.scores, cfg.dim)
        self.user = nn.Linear(cfg.item_dim, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, cfg.dim * 4, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out = nn.Linear(cfg.dim, 1)
        self.keep = nn.Parameter(torch.tensor(1.0))  # starts as "the DeepFM order"
        # Starts at zero: the other scalars add nothing until training finds their weight.
        self.wide = nn.Linear(cfg.scores - 1, 1, bias=False) if cfg.wide and cfg.scores > 1 else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)

    def forward(self, user: torch.Tensor, items: torch.Tensor, scores: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """user (B, 128), items (B, N, 128), scores (B, N, S), pad (B, N) -> (B, N) logits."""
        tokens = torch.cat([self.user(user).unsqueeze(1), self.item(torch.cat([items, scores], -1))], dim=1)
        mask = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        encoded = self.encoder(tokens, src_key_padding_mask=mask)[:, 1:]
        logits = self.keep * scores[..., 0] + self.out(encoded).squeeze(-1)
        if self.wide is not None:
            logits = logits + self.wide(scores[..., 1:]).squeeze(-1)
        return logits.masked_fill(pad, float("-inf"))

    def score(self, lst: CandidateList) -> np.ndarray:
        return self.score_many([lst])[0]

    @torch.inference_mode()
    def score_many(self, lists: Sequence[CandidateList]) -> list[np.ndarray]:
        """Each list's scores, the lists in one forward (padded to the longest, masked)."""
        if not lists:
            return []
        if self.training:  # eval() walks every submodule: only when it changes something
            self.eval()
        out = self(*_batch(lists)).numpy()
        return [out[i, : len(x.vectors)] for i, x in enumerate(lists)]


def _batch(lists: Sequence[CandidateList]) -> tuple[torch.Tensor, ...]:
    n = max(len(x.vectors) for x in lists)
    b, d, w = len(lists), lists[0].vectors.shape[1], lists[0].scores.shape[1]
    items = torch.zeros(b, n, d)
    scores = torch.zeros(b, n, w)
    pad = torch.ones(b, n, dtype=torch.bool)
    for i, x in enumerate(lists):
        m = len(x.vectors)
        items[i, :m] = torch.from_numpy(np.asarray(x.vectors, dtype=np.float32))
        scores[i, :m] = torch.from_numpy(np.asarray(x.scores, dtype=np.float32))
        pad[i, :m] = False
    user = torch.from_numpy(np.stack([np.asarray(x.user, dtype=np.float32) for x in lists]))
    return user, items, scores, pad


def select(
    scores: np.ndarray, vectors: np.ndarray, k: int, lam: float, redundancy: Literal["max", "mean"] = "mean"
) -> list[int]:
    """Greedy: ``lam`` * min-max scaled score - (1 - lam) * redundancy with the picked.
    "mean" (after the self-attention reranker): the mean similarity, each pick's effect on
    the list's ILD; classic MMR's "max" (the baseline) protects only the closest pair and
    measured less ILD for more NDCG lost (README "Recommendation quality")."""
    finite = np.isfinite(scores)
    s = np.where(finite, scores, np.nan)
    lo, hi = np.nanmin(s), np.nanmax(s)
    scaled = np.where(finite, (s - lo) / (hi - lo + 1e-9), -1.0)
    return mmr(scaled, vectors, k, lam, redundancy)


class DiversityHistory(BaseModel):
    loss: list[float] = Field(default_factory=list)
    seconds: float = 0.0


def train_diversity(
    lists: list[CandidateList],
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    wide: bool = True,
) -> tuple[SelfAttentionReranker, DiversityHistory]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = SelfAttentionReranker(DiversityConfig(scores=lists[0].scores.shape[1], wide=wide) if lists else None)
    # The wide term is a linear model over a handful of scalars, starting at zero: at the
    # transformer's rate (Adam moves a weight ~lr per step) a few hundred steps leave it
    # near zero, so it learns ten times faster.
    wide_params = list(model.wide.parameters()) if model.wide is not None else []
    rest = [p for p in model.parameters() if all(p is not w for w in wide_params)]
    groups = [{"params": rest}] + ([{"params": wide_params, "lr": lr * 10}] if wide_params else [])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    data = [x for x in lists if x.target >= 0]
    history = DiversityHistory()
    start = time.perf_counter()
    for epoch in range(epochs):
        rng.shuffle(data)
        losses = []
        for lo in tqdm(range(0, len(data), batch_size), desc=f"self-attention reranker {epoch + 1}", leave=False):
            chunk = data[lo : lo + batch_size]
            logits = model(*_batch(chunk))
            loss = F.cross_entropy(logits, torch.tensor([x.target for x in chunk]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        history.loss.append(float(np.mean(losses)) if losses else 0.0)
        log(f"self-attention reranker epoch {epoch + 1}: listwise CE {history.loss[-1]:.4f}")
    history.seconds = time.perf_counter() - start
    return model.eval(), history


def save(model: SelfAttentionReranker, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "diversity.safetensors"))
    (folder / "diversity.json").write_text(model.cfg.model_dump_json(), encoding="utf-8")


def load(folder: Path) -> SelfAttentionReranker:
    cfg = DiversityConfig.model_validate_json((folder / "diversity.json").read_text(encoding="utf-8"))
    model = SelfAttentionReranker(cfg)
    model.load_state_dict(load_file(str(folder / "diversity.safetensors")))
    return model.eval()
