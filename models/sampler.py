"""Hierarchical batch sampler (seed-a): each batch is filled with SIBLING fine categories
under one coarse category (coat + jacket + jumper under outer), so the triplet miner keeps
finding hard negatives; a share of the batch comes from other coarse groups."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence


class HierarchicalBatchSampler:
    def __init__(
        self,
        coarse: Sequence[str],
        fine: Sequence[str],
        batch_size: int = 64,
        per_class: int = 8,
        other_share: float = 0.25,
        seed: int = 0,
    ) -> None:
        self.batch_size, self.per_class, self.other_share = batch_size, per_class, other_share
        self.rng = random.Random(seed)
        self.by_fine: dict[str, list[int]] = defaultdict(list)
        self.fines_of: dict[str, set[str]] = defaultdict(set)
        for i, (c, f) in enumerate(zip(coarse, fine, strict=True)):
            self.by_fine[f].append(i)
            self.fines_of[c].add(f)
        self.n = len(coarse)

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def _take(self, fine: str, k: int) -> list[int]:
        pool = self.by_fine[fine]
        return self.rng.sample(pool, k) if len(pool) >= k else [self.rng.choice(pool) for _ in range(k)]

    def __iter__(self) -> Iterator[list[int]]:
        coarse_keys = sorted(self.fines_of)
        for _ in range(len(self)):
            coarse = self.rng.choice(coarse_keys)
            batch: list[int] = []
            siblings = sorted(self.fines_of[coarse])
            sibling_room = int(self.batch_size * (1 - self.other_share))
            while len(batch) < sibling_room:
                batch += self._take(self.rng.choice(siblings), self.per_class)
            # sorted: set order changes with PYTHONHASHSEED, and batches must not.
            others = [f for c in coarse_keys if c != coarse for f in sorted(self.fines_of[c])] or siblings
            while len(batch) < self.batch_size:
                batch += self._take(self.rng.choice(others), self.per_class)
            yield batch[: self.batch_size]
