"""Turns enriched products into 128-d vectors: dual vocabulary -> tensors -> item tower."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from models.item_tower import ItemTower
from models.tokenizer import title_ids
from models.vocab import ReVocab, StdVocab, term
from schemas.attributes import FlatAttributes

MAX_STD_TOKENS = 48
MAX_RE_TOKENS = 48


class ItemInput(Protocol):
    title: str
    std: FlatAttributes
    re: FlatAttributes
    coarse: str
    fine: str


@dataclass(frozen=True)
class ItemContent:
    """A plain ``ItemInput``: what the tower reads of an item, without an event around it
    (a stored row on the request path, a typed query as a pseudo item)."""

    title: str
    std: FlatAttributes
    re: FlatAttributes
    coarse: str
    fine: str


def _pad(rows: list[list[int]], limit: int) -> torch.Tensor:
    width = max(1, min(limit, max((len(r) for r in rows), default=1)))
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:width]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) > 1}


class ItemEncoder:
    """``trained_terms``: how many RE ids the tower's weights were trained with; rows past
    that are terms added at run time and are initialised from their trained siblings."""

    def __init__(
        self, tower: ItemTower, std_vocab: StdVocab, re_vocab: ReVocab, version: str, trained_terms: int | None = None
    ) -> None:
        self.tower = tower.eval()
        self.std_vocab = std_vocab
        self.re_vocab = re_vocab
        self.version = version
        self.trained_terms = len(re_vocab) if trained_terms is None else trained_terms
        late = [(i, t) for i, t in enumerate(re_vocab.tokens) if i >= self.trained_terms]
        self.tower.grow_re(late, self._sibling_rows(late))

    def _sibling_rows(self, new: list[tuple[int, str]]) -> dict[int, torch.Tensor]:
        """A new term ``key=value`` starts as the mean of the trained rows of its key that
        share a word with it ("fabric.feature=cashmere_heavy" <- "fabric.feature=cashmere_thick"),
        else of all trained rows of its key; a new key keeps the text-hash start."""
        if not new:
            return {}
        by_key: dict[str, list[tuple[int, set[str]]]] = {}
        for i, token in enumerate(self.re_vocab.tokens[: self.trained_terms]):
            key, _, value = token.partition("=")
            by_key.setdefault(key, []).append((i, _words(value)))
        weight = self.tower.re_emb.weight.detach()
        rows: dict[int, torch.Tensor] = {}
        for i, token in new:
            key, _, value = token.partition("=")
            siblings = by_key.get(key, [])
            words = _words(value)
            close = [j for j, w in siblings if w & words] or [j for j, _ in siblings]
            if close:
                rows[i] = weight[close].mean(0)
        return rows

    def register(self, re: FlatAttributes) -> list[str]:
        """RE vocabulary expansion: unseen terms get ids (persisted) and embedding rows."""
        _, new = self.re_vocab.encode(re, grow=True)
        rows = [(self.re_vocab.lookup(t), t) for t in new]
        self.tower.grow_re(rows, self._sibling_rows(rows))
        return new

    def std_tokens(self, item: ItemInput) -> list[int]:
        # The category hierarchy enters as its own tokens so every item has coarse + fine.
        std = {**item.std, "coarse": [item.coarse], "fine": [item.fine]}
        return self.std_vocab.encode(std)

    def re_tokens(self, item: ItemInput) -> list[int]:
        ids = [self.re_vocab.lookup(term(k, v)) for k, vs in item.re.items() for v in vs]
        return [i for i in ids if i != 0]

    def tensors(self, items: Sequence[ItemInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        std = _pad([self.std_tokens(it) for it in items], MAX_STD_TOKENS)
        re = _pad([self.re_tokens(it) for it in items], MAX_RE_TOKENS)
        title = _pad([title_ids(it.title) for it in items], self.tower.cfg.max_title_tokens)
        return std, re, title

    def encode_growing(self, items: Sequence[ItemInput]) -> np.ndarray:
        """As the worker does it: RE terms never seen grow the vocabulary, then encode."""
        for it in items:
            self.register(it.re)
        return self.encode(items)

    @torch.inference_mode()
    def encode(self, items: Sequence[ItemInput]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.tower.cfg.out_dim), dtype=np.float32)
        return self.tower(*self.tensors(items)).numpy().astype(np.float32)
