"""Keeps the worker's row cache (``consumers.row_cache``) coherent across workers.

Every product a worker (re-)embeds is published on ``tailor.products.enriched`` after its
Milvus upsert, keyed by product_id. Each worker reads that topic with its own group-less
consumer (a change notice is a broadcast, not work to share) and forgets the cached rows
of those products, so a product changed by another worker reaches this one's reranker
within a fraction of a second, and the cache's TTL can be long (fewer Milvus reads on the
request path). The key is enough: the value is not even decoded.

When notices may have been missed (the consumer started late or failed), the whole cache
is dropped: a slower request is better than a stale row for the TTL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.idle_fetch import pause_consumer_idle_fetches
from consumers.kafka import client_kwargs
from schemas import topics
from streams.services import Services

log = logging.getLogger("tailor.row_sync")

# After an empty fetch of the notices: products change rarely next to the requests, and a
# notice this much later is still far inside what the TTL used to allow (60 s).
NOTICE_IDLE_PAUSE_MS = 50.0
# Reads this soon after a notice are not cached: Milvus standalone may show another
# client's write ~200 ms late (Session consistency; DESIGN.md); milvus-lite at once.
SETTLE_S = 5.0
RETRY_S = 2.0


def product_ids(keys: Iterable[bytes | None]) -> list[int]:
    """The product ids of notice keys; a key that is not one is skipped (it names no row)."""
    ids = []
    for key in keys:
        try:
            ids.append(int((key or b"").decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            continue
    return ids


def forget(services: Services, ids: list[int]) -> None:
    cache = services.store.cache  # the live item space's store: a swap replaces it
    if cache is not None and ids:
        cache.forget(ids, SETTLE_S)


def drop_all(services: Services) -> None:
    cache = services.store.cache
    if cache is not None:
        cache.clear()


async def watch(services: Services) -> None:
    """Run for the worker's lifetime; a failure drops the cache and starts over."""
    while True:
        try:
            await _follow(services)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the request path must not lose its cache coherence silently
            log.exception("product change notices interrupted; dropping the row cache and reading again")
            drop_all(services)
            await asyncio.sleep(RETRY_S)


async def _follow(services: Services) -> None:
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(services.settings))
    await consumer.start()
    pause_consumer_idle_fetches(consumer, NOTICE_IDLE_PAUSE_MS)
    try:
        spec = topics.PRODUCTS_ENRICHED
        parts = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)  # listening from here on: no notice after this is missed
        drop_all(services)  # ... and what was cached before may have missed some
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            forget(services, product_ids(r.key for records in batches.values() for r in records))
    finally:
        await consumer.stop()


__all__ = ["product_ids", "watch"]
