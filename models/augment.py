"""SimCSE views (seed-b step 4): feature dropout over STD/RE tokens, masking of title tokens."""

from __future__ import annotations

import torch

MASK_TOKEN = 103  # [MASK] in the MiniLM WordPiece vocabulary


def feature_dropout(ids: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Zero (pad) each present token with probability p, but keep at least one per row."""
    present = ids != 0
    drop = (torch.rand(ids.shape, generator=gen) < p) & present
    kept = present & ~drop
    empty = kept.sum(1) == 0
    if empty.any():  # give such rows back their first token
        first = present.float().argmax(1)
        drop[empty, first[empty]] = False
    return ids.masked_fill(drop, 0)


def token_mask(ids: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    hit = (torch.rand(ids.shape, generator=gen) < p) & (ids != 0)
    return ids.masked_fill(hit, MASK_TOKEN)


def view(
    std: torch.Tensor,
    re: torch.Tensor,
    title: torch.Tensor,
    drop_p: float,
    mask_p: float,
    gen: torch.Generator | None = None,
    re_block_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SimCSE view. ``re_block_p``: chance to drop an item's whole RE block, so a
    product that arrives with STD only (no enrichment yet) lands next to its enriched self."""
    whole = (torch.rand(re.shape[0], 1, generator=gen) < re_block_p).expand_as(re)
    re_dropped = re.masked_fill(((torch.rand(re.shape, generator=gen) < drop_p) | whole) & (re != 0), 0)
    return feature_dropout(std, drop_p, gen), re_dropped, token_mask(title, mask_p, gen)
