"""The logged topics as an interaction log for retraining: ``tailor.products.enriched``
(the catalog, latest event per product), ``tailor.interactions`` (the events) and
``tailor.recommend.requests`` (the latest profile each user sent). Read from the start up
to the end offsets seen when reading began; bad records are skipped (they were
dead-lettered when they were live)."""

from __future__ import annotations

import logging
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ValidationError

from consumers.kafka import client_kwargs
from models.interactions import Event, InteractionLog
from schemas import topics
from schemas.events import Interaction, ProductEnriched, Profile, RecommendRequest
from schemas.settings import Settings

log = logging.getLogger("tailor.retrain")
T = TypeVar("T", bound=BaseModel)


async def read_all(settings: Settings, spec: topics.TopicSpec) -> list[bytes]:
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        values: list[bytes] = []
        while [p for p in parts if await consumer.position(p) < end[p]]:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            values.extend(r.value for recs in batch.values() for r in recs if r.value is not None)
        return values
    finally:
        await consumer.stop()


def _valid(model: type[T], values: list[bytes]) -> list[T]:
    out = []
    for raw in values:
        try:
            out.append(model.model_validate_json(raw))
        except ValidationError:
            continue
    return out


async def topic_log(settings: Settings) -> InteractionLog:
    products = _valid(ProductEnriched, await read_all(settings, topics.PRODUCTS_ENRICHED))
    clicks = _valid(Interaction, await read_all(settings, topics.INTERACTIONS))
    requests = _valid(RecommendRequest, await read_all(settings, topics.RECOMMEND_REQUESTS))
    items = list({p.product_id: p for p in products}.values())  # the latest version of each
    seen: set[str] = set()
    events = []
    for c in clicks:
        if c.event_id not in seen:  # a replayed click counts once
            seen.add(c.event_id)
            events.append(Event(c.user_id, c.product_id, c.ts.timestamp(), c.kind))
    profiles: dict[str, Profile] = {r.user_id: r.profile for r in requests if r.profile is not None}
    result = InteractionLog("topics", items, events, profiles)
    log.info("%s", result.summary())
    return result
