"""Retry with exponential backoff, for outages (Milvus down, broker unreachable).

The agent waits here instead of moving on, so the event's offset is not committed and
nothing is lost; the worker keeps its other agents running meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("tailor.retry")


async def with_backoff(
    action: Callable[[], Awaitable[T]],
    what: str,
    first_s: float = 0.2,
    max_s: float = 10.0,
    attempts: int | None = None,
) -> T:
    delay, attempt = first_s, 0
    while True:
        attempt += 1
        try:
            return await action()
        except Exception as exc:  # noqa: BLE001 - any failure of the outside service is retried
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("%s failed (attempt %d: %s); retrying in %.1fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_s)
