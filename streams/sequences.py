"""User sequence state (the value of the ``user-sequences`` table) and its update rule."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
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
    restart with the table) and kept current by the interaction agent.

    The ranking is recomputed at most every ``refresh_s``: every request asks for the top
    items, and ranking all counts each time (``Counter.most_common`` over the catalog) was
    5% of a busy worker's CPU; "popular now" may lag its clicks by that long."""

    RANKED = 1000  # ranked at once, so requests with longer exclusion lists reuse it

    def __init__(self, refresh_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[int] = Counter()
        self.built = False
        self.refresh_s = refresh_s
        self.clock = clock
        self._ranked: list[tuple[int, int]] = []
        self._depth = 0  # how many were asked for when _ranked was computed
        self._at = -float("inf")

    def rebuild(self, sequences: Iterable[UserSequence]) -> None:
        self.counts = Counter(pid for seq in sequences for pid in seq.product_ids())
        self.built = True
        self._at = -float("inf")

    def add(self, product_id: int) -> None:
        if self.built:
            self.counts[product_id] += 1

    def top(self, n: int, exclude: set[int]) -> list[tuple[int, int]]:
        want = n + len(exclude)
        now = self.clock()
        if want > self._depth or now - self._at > self.refresh_s:
            self._depth = max(want, self.RANKED)
            self._ranked = self.counts.most_common(self._depth)
            self._at = now
        return [(p, c) for p, c in self._ranked[:want] if p not in exclude][:n]
