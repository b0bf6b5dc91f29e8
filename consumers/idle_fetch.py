"""A pause after an empty fetch, for every aiokafka consumer of this process (faust's too).

Apache Kafka holds an empty fetch for ``fetch_max_wait_ms`` (500 ms) before it answers,
so an idle consumer sleeps in the broker. The embedded default broker, noida-db, answers
an empty fetch at once: an idle aiokafka consumer then sends ~5,000 fetches/s and burns
~80% of a core (measured, ``bench/latency``). On a 2-core machine that is CPU taken from
the requests. A short sleep after a fetch that brought nothing bounds it (2 ms: ~390
fetches/s, ~12% of a core, at most 2 ms more before a new record is seen). Against a real
Kafka the fetch itself waited, so the pause changes nothing there.

With a max above the first pause (16 ms by default) the pause doubles with each further
empty fetch, up to that max, and is back at its first value after a fetch that brought
records. An idle consumer, whose every empty fetch decodes a response for each of its
partitions (the worker's faust consumer has 16), then stops spending a third of a core on
nothing (idle worker 0.36 -> 0.18 cores at 8 ms, 0.11 at 16 ms), at the price of up to the
max's delay on the first record after a quiet spell. A busy worker gains too: its fetch
loop shares the GIL with the request path, and between two batches of requests it no
longer fetches every 2 ms (``bench/latency --variant``, README "Request latency")."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.consumer import fetcher

_original = fetcher.Fetcher._proc_fetch_request  # noqa: SLF001
_backoff_s = 0.0  # the first pause after a fetch with records
_max_backoff_s = 0.0  # the cap of the doubling
_OWN_PAUSE = "_tailor_idle_backoff_s"  # a consumer's own fixed pause, on its fetcher
_PAUSED = "_tailor_idle_pause_s"  # the last pause after an empty fetch, on each fetcher (0: records came)


def next_pause_s(last_s: float, first_s: float, cap_s: float) -> float:
    """The pause after an empty fetch, given the one after the previous fetch (0 when that
    brought records): the first value, then doubling up to the cap."""
    return min(last_s * 2, max(cap_s, first_s)) if last_s > 0 else first_s


async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
    got = await _original(self, assignment, node_id, request)
    if got:
        setattr(self, _PAUSED, 0.0)
        return got
    backoff_s = getattr(self, _OWN_PAUSE, None)
    if backoff_s is None:
        backoff_s = next_pause_s(getattr(self, _PAUSED, 0.0), _backoff_s, _max_backoff_s)
        setattr(self, _PAUSED, backoff_s)
    if backoff_s > 0:
        try:
            await asyncio.sleep(backoff_s)
        except asyncio.CancelledError:  # closing: as the original, a cancelled fetch yields nothing
            return False
    return got


def pause_idle_fetches(backoff_ms: float, max_backoff_ms: float = 0.0) -> None:
    """From now on, sleep after each empty fetch: ``backoff_ms`` after the first, doubling
    with each further one up to ``max_backoff_ms`` (0 or less than ``backoff_ms``: no
    doubling; ``backoff_ms`` 0: never)."""
    global _backoff_s, _max_backoff_s
    _backoff_s = max(backoff_ms, 0.0) / 1000.0
    _max_backoff_s = max(max_backoff_ms, 0.0) / 1000.0
    fetcher.Fetcher._proc_fetch_request = _proc_fetch_request  # type: ignore[method-assign]  # noqa: SLF001


def pause_consumer_idle_fetches(consumer: Any, backoff_ms: float) -> None:
    """This started consumer's own pause after an empty fetch, instead of the process's: for
    a consumer of a topic that is written rarely and read without hurry (a model update), whose
    fetch loop would otherwise cost as much CPU as the request path's, in the worker and in
    the broker. Call after ``start()`` (aiokafka builds the fetcher there)."""
    fetch = getattr(consumer, "_fetcher", None)
    if fetch is None:
        raise RuntimeError("pause_consumer_idle_fetches: start the consumer first")
    setattr(fetch, _OWN_PAUSE, max(backoff_ms, 0.0) / 1000.0)
