"""Interaction logs and the offline evaluation split (pure: no I/O).

The split is per-user leave-last-out by time: each user's last interaction is the target,
the earlier ones are the history the rankers see. On top of it a seeded share of the
interacted items is "cold": every event of theirs is dropped from training, so a model can
only reach them from content. Test cases whose target is cold are kept apart
(``Split.cold_tests``) to measure exactly that.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.events import ProductEnriched, Profile

KINDS = ("click", "cart", "purchase")


@dataclass(frozen=True)
class Event:
    user_id: str
    product_id: int
    ts: float  # seconds; only the order matters to the split
    kind: str = "purchase"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")


@dataclass
class InteractionLog:
    name: str
    items: list[ProductEnriched]
    events: list[Event]
    profiles: dict[str, Profile]

    def summary(self) -> str:
        users = len({e.user_id for e in self.events})
        return f"{self.name}: {users:,} users, {len(self.items):,} items, {len(self.events):,} events"


@dataclass
class TestCase:
    __test__ = False  # not a pytest test class, despite the name

    user_id: str
    history: list[int]  # training product ids, oldest first
    target: int


@dataclass
class Split:
    train: list[Event]  # time order; no event of a cold item
    tests: list[TestCase]  # targets that are warm items
    cold_items: frozenset[int]
    cold_tests: list[TestCase]  # targets that are cold items


def dedupe_consecutive(events: Iterable[Event]) -> list[Event]:
    """Drop an event that repeats the previous one's product: H&M logs one row per unit
    bought, so a basket of three identical socks would otherwise be a trivial 'next item'."""
    out: list[Event] = []
    for e in events:
        if not out or out[-1].product_id != e.product_id:
            out.append(e)
    return out


def user_sequences(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Each user's events in time order (stable: equal timestamps keep log order), deduped."""
    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    return {u: dedupe_consecutive(sorted(seq, key=lambda e: e.ts)) for u, seq in sorted(by_user.items())}


def choose_cold_items(events: Iterable[Event], fraction: float, seed: int) -> frozenset[int]:
    """A seeded ``fraction`` of the items that have interactions (sorted first, so the pick
    depends only on the seed and the item set, not on the log order)."""
    ids = sorted({e.product_id for e in events})
    return frozenset(random.Random(seed).sample(ids, round(fraction * len(ids))))


def leave_last_out(
    log: InteractionLog, cold_fraction: float = 0.2, seed: int = 0, min_history: int = 1, max_history: int = 50
) -> Split:
    """Per user: the last interaction is the target when at least ``min_history`` warm
    events precede it; the history is the last ``max_history`` of those. Users without a
    test case give all their warm events to training (they help popularity and
    co-occurrence and are never asked about)."""
    if min_history < 1:
        raise ValueError("min_history must be >= 1: a case without history has nothing to rank from")
    cold = choose_cold_items(log.events, cold_fraction, seed)
    train: list[Event] = []
    tests: list[TestCase] = []
    cold_tests: list[TestCase] = []
    for user, seq in user_sequences(log.events).items():
        earlier = dedupe_consecutive(e for e in seq[:-1] if e.product_id not in cold)
        if len(earlier) < min_history:
            train.extend(dedupe_consecutive(e for e in seq if e.product_id not in cold))
            continue
        case = TestCase(user, [e.product_id for e in earlier[-max_history:]], seq[-1].product_id)
        (cold_tests if case.target in cold else tests).append(case)
        train.extend(earlier)
    train.sort(key=lambda e: e.ts)  # stable: ties keep user order, so the split is deterministic
    return Split(train=train, tests=tests, cold_items=cold, cold_tests=cold_tests)


def train_sequences(split: Split) -> dict[str, list[int]]:
    """Each user's training product ids, oldest first (what sequence models learn from)."""
    return {u: [e.product_id for e in seq] for u, seq in user_sequences(split.train).items()}
