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
