"""User sequence state (the value of the ``user-sequences`` table) and its update rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from schemas.events import Interaction


class SeqItem(BaseModel):
    product_id: int
    kind: str
    ts: datetime
    event_id: str


class UserSequence(BaseModel):
    items: list[SeqItem] = Field(default_factory=list)  # oldest -> newest

    def add(self, event: Interaction, limit: int) -> bool:
        """Apply one interaction; False when it was already applied (a replay)."""
        if any(it.event_id == event.event_id for it in self.items):
            return False
        self.items.append(SeqItem(product_id=event.product_id, kind=event.kind, ts=event.ts, event_id=event.event_id))
        # Events may arrive out of order; keep time order, newest last (stable sort).
        self.items.sort(key=lambda it: it.ts)
        del self.items[:-limit]
        return True

    def product_ids(self) -> list[int]:
        return [it.product_id for it in self.items]


class Popularity:
    """Interaction counts per product, derived from the sequence table (so it survives a
    restart with the table) and kept current by the interaction agent."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.built = False

    def rebuild(self, sequences: Iterable[UserSequence]) -> None:
        self.counts = Counter(pid for seq in sequences for pid in seq.product_ids())
        self.built = True

    def add(self, product_id: int) -> None:
        if self.built:
            self.counts[product_id] += 1

    def top(self, n: int, exclude: set[int]) -> list[tuple[int, int]]:
        return [(p, c) for p, c in self.counts.most_common(n + len(exclude)) if p not in exclude][:n]
