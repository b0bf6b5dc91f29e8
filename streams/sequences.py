"""User sequence state (the value of the ``user-sequences`` table) and its update rule."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_serializer, model_validator

from schemas.events import Interaction

# Stored per item: [product_id, kind code, ts in microseconds since the epoch, event key].
# The table's changelog gets the whole sequence on every click (faust tables keep one value
# per key), so its size is the table's write volume: ~2.5x smaller than the field-named
# JSON of v1 ({"items": [{"product_id": .., "kind": .., "ts": "<ISO>", "event_id": ..}]}),
# which mattered most on the embedded broker: noida-db rewrites its whole state file every
# couple of seconds while anything is written, so its CPU grows with the retained bytes
# (measured: 0.05 cores at 7 MB, 0.50 cores at 135 MB, both at 10 writes/s). v1 values
# (older changelogs) still load.
SEQUENCE_FORMAT = 2
_KIND_CODE = {"click": "c", "cart": "a", "purchase": "p"}
_CODE_KIND = {v: k for k, v in _KIND_CODE.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def event_key(event_id: str) -> str:
    """A fixed-size digest of an event id (ids are up to 128 characters), what a sequence
    keeps to recognise a replayed event: 64 bits, so a false "already applied" among a
    user's last 50 events has a chance of about 1e-16."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts  # naive = UTC, so items always compare


class SeqItem(BaseModel):
    product_id: int
    kind: str
    ts: datetime
    event_key: str  # ``event_key(event_id)``

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        return _utc(ts)

    @classmethod
    def from_stored(cls, row: list[Any]) -> SeqItem:
        pid, code, micros, key = row
        ts = _EPOCH + timedelta(microseconds=int(micros))
        return cls.model_construct(product_id=int(pid), kind=_CODE_KIND.get(code, "click"), ts=ts, event_key=str(key))

    def stored(self) -> list[Any]:
        micros = (_utc(self.ts) - _EPOCH) // timedelta(microseconds=1)
        return [self.product_id, _KIND_CODE.get(self.kind, "c"), micros, self.event_key]


class UserSequence(BaseModel):
    items: list[SeqItem] = Field(default_factory=list)  # oldest -> newest

    @model_validator(mode="before")
    @classmethod
    def _from_stored(cls, data: Any) -> Any:
        """A table value: v2 (``{"v": 2, "i": [...]}``) or v1 (``{"items": [...]}``)."""
        if isinstance(data, dict) and data.get("v") == SEQUENCE_FORMAT:
            return {"items": [SeqItem.from_stored(row) for row in data.get("i", [])]}
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            items = []
            for it in data["items"]:
                if isinstance(it, dict) and "event_id" in it and "event_key" not in it:
                    it = {**it, "event_key": event_key(str(it["event_id"]))}
                items.append(it)
            return {"items": items}
        return data

    @classmethod
    def from_table(cls, raw: Any) -> UserSequence:
        """A table value read on the request path: a v2 value is built without validation
        (the worker wrote it; ~2x faster per request), anything else is validated."""
        if isinstance(raw, dict) and raw.get("v") == SEQUENCE_FORMAT:
            return cls.model_construct(items=[SeqItem.from_stored(row) for row in raw.get("i", [])])
        return cls.model_validate(raw)

    @model_serializer
    def _stored(self) -> dict[str, Any]:
        return {"v": SEQUENCE_FORMAT, "i": [it.stored() for it in self.items]}

    def add(self, event: Interaction, limit: int) -> bool:
        """Apply one interaction; False when it was already applied (a replay)."""
        key = event_key(event.event_id)
        if any(it.event_key == key for it in self.items):
            return False
        self.items.append(SeqItem(product_id=event.product_id, kind=event.kind, ts=_utc(event.ts), event_key=key))
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
