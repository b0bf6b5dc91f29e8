"""The row cache is coherent across workers: a product another worker changes reaches this
worker's replies through the change notices on tailor.products.enriched, not after the TTL."""

from __future__ import annotations

import asyncio
import time

import pytest

from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient
from consumers.vector_store import ItemRow, VectorStore
from schemas import topics
from streams.row_sync import SETTLE_S
from tests.factories import product
from tests.harness import Stack
from tests.test_integration import enriched

pytestmark = pytest.mark.integration

PID = 7301


async def title_in_reply(client: RecommendClient) -> str:
    reply = await client.recommend("u-row-sync", k=10, context="green jacket", filters={"fine": "jacket"})
    return next(i.title for i in reply.items if i.product_id == PID)


async def test_a_product_changed_by_another_worker_is_served_fresh(
    stack: Stack, producer: TailorProducer, client: RecommendClient, store: VectorStore
) -> None:
    assert stack.settings.row_cache_ttl_s >= 600  # long: only the notices can make this test pass
    await producer.publish_product(product(PID, "jacket", "Green", title="Green Field Jacket"))
    event = (await enriched(stack, {PID}))[PID]
    # Every worker reads its own notices too: reads right after one are not cached (SETTLE_S).
    await asyncio.sleep(SETTLE_S + 1)
    assert await title_in_reply(client) == "Green Field Jacket"  # the row is read, and now cached

    # Another worker re-embeds the product: first its Milvus upsert ...
    row = store.get([PID])[PID]
    changed = ItemRow(**{**{k: row[k] for k in ItemRow.model_fields if k in row}, "title": "Green Utility Jacket"})
    store.upsert([changed])
    for _ in range(3):  # ... which this worker does not see yet: it serves the cached row
        assert await title_in_reply(client) == "Green Field Jacket"
    # ... then its notice, as the product path publishes after every upsert.
    notice = event.model_copy(update={"title": "Green Utility Jacket"})
    await producer.send_raw(topics.PRODUCTS_ENRICHED.name, str(PID), notice.model_dump_json().encode())
    deadline = time.monotonic() + 10
    while await title_in_reply(client) != "Green Utility Jacket":
        assert time.monotonic() < deadline, "the change notice did not reach the worker's row cache"
        await asyncio.sleep(0.1)
