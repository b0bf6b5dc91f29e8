"""A pause after an empty fetch, for every aiokafka consumer of this process (faust's too).

Apache Kafka holds an empty fetch for ``fetch_max_wait_ms`` (500 ms) before it answers,
so an idle consumer sleeps in the broker. The embedded default broker, noida-db, answers
an empty fetch at once: an idle aiokafka consumer then sends ~5,000 fetches/s and burns
~80% of a core (measured, ``bench/latency``). On a 2-core machine that is CPU taken from
the requests. A short sleep after a fetch that brought nothing bounds it (2 ms: ~390
fetches/s, ~12% of a core, at most 2 ms more before a new record is seen). Against a real
Kafka the fetch itself waited, so the pause changes nothing there."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.consumer import fetcher

_original = fetcher.Fetcher._proc_fetch_request  # noqa: SLF001
_backoff_s = 0.0
_OWN_PAUSE = "_tailor_idle_backoff_s"  # a consumer's own pause, on its fetcher


async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
    got = await _original(self, assignment, node_id, request)
    backoff_s = getattr(self, _OWN_PAUSE, _backoff_s)
    if not got and backoff_s > 0:
        try:
            await asyncio.sleep(backoff_s)
        except asyncio.CancelledError:  # closing: as the original, a cancelled fetch yields nothing
            return False
    return got


def pause_idle_fetches(backoff_ms: float) -> None:
    """Sleep ``backoff_ms`` after each empty fetch from now on (0: never)."""
    global _backoff_s
    _backoff_s = max(backoff_ms, 0.0) / 1000.0
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
