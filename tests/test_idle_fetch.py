"""The pause after an empty fetch: the process's, and a consumer's own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from consumers import idle_fetch


def test_a_consumer_can_have_its_own_pause_after_an_empty_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fetch(_self: Any, *_: Any) -> bool:
        return False  # an empty fetch

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(idle_fetch, "_original", fetch)
    monkeypatch.setattr(idle_fetch, "_backoff_s", 0.002)
    monkeypatch.setattr(idle_fetch.asyncio, "sleep", sleep)
    busy, quiet = SimpleNamespace(), SimpleNamespace()
    idle_fetch.pause_consumer_idle_fetches(SimpleNamespace(_fetcher=quiet), 200)
    for fetcher in (busy, quiet):
        assert asyncio.run(idle_fetch._proc_fetch_request(fetcher, None, None, None)) is False
    assert slept == [0.002, 0.2]
    with pytest.raises(RuntimeError):
        idle_fetch.pause_consumer_idle_fetches(SimpleNamespace(_fetcher=None), 200)  # not started


def test_the_pause_doubles_while_fetches_stay_empty_up_to_the_cap() -> None:
    pauses, last = [], 0.0
    for _ in range(2000):  # a long quiet spell: bounded, no overflow
        last = idle_fetch.next_pause_s(last, 0.002, 0.016)
        pauses.append(last)
    assert pauses[:5] == [0.002, 0.004, 0.008, 0.016, 0.016] and max(pauses) == 0.016
    assert idle_fetch.next_pause_s(0.0, 0.002, 0.016) == 0.002  # records came: the first pause again
    assert idle_fetch.next_pause_s(0.002, 0.002, 0.0) == 0.002  # no cap set: no doubling
    assert idle_fetch.next_pause_s(0.0, 0.0, 0.016) == 0.0  # off


def test_an_empty_streak_is_reset_by_a_fetch_with_records(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    results = iter([False, False, False, True, False])

    async def fetch(_self: Any, *_: Any) -> bool:
        return next(results)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(idle_fetch, "_original", fetch)
    monkeypatch.setattr(idle_fetch, "_backoff_s", 0.002)
    monkeypatch.setattr(idle_fetch, "_max_backoff_s", 0.016)
    monkeypatch.setattr(idle_fetch.asyncio, "sleep", sleep)
    fetcher = SimpleNamespace()
    for _ in range(5):
        asyncio.run(idle_fetch._proc_fetch_request(fetcher, None, None, None))
    assert slept == [0.002, 0.004, 0.008, 0.002]
