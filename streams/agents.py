"""The worker's agents: products, interactions, recommendation requests.

Each agent decodes raw bytes itself: a bad message becomes a DeadLetter (original bytes +
reason) and the agent goes on. Effects are awaited (Milvus upsert, sends acknowledged)
before an event is acked, and faust flushes the producer before it commits offsets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.streams import _current_event
from faust.types import EventT, StreamT
from pydantic import BaseModel

from consumers.enrichment.base import EnrichmentError
from schemas.events import (
    DeadLetter,
    Interaction,
    ProductCreated,
    ProductEnriched,
    RecommendReply,
    RecommendRequest,
    ReenrichRequest,
)
from streams import model_swap, row_sync
from streams.app import (
    app,
    deadletter,
    interactions,
    product_versions,
    products_created,
    products_enriched,
    products_reenrich,
    recommend_replies,
    recommend_requests,
    sequences,
    settings,
)
from streams.deadletter import decode, letter_key
from streams.metrics import DEADLETTERS, EVENTS, RE_TERMS, REQUEST_SECONDS
from streams.sequences import UserSequence
from streams.services import Services

log = logging.getLogger("tailor.agents")
services: Services | None = None  # set by the worker entry point before the app starts


def svc() -> Services:
    if services is None:
        raise RuntimeError("worker services not initialised (start the worker with `tailor worker`)")
    return services


async def _send(topic: Any, key: str, value: BaseModel) -> None:
    # Await the delivery report: the effect must be durable before the event is acked.
    await (await topic.send(key=key.encode(), value=value.model_dump_json().encode()))


async def _dead(letter: DeadLetter) -> None:
    log.warning(
        "dead-letter %s@%s/%s: %s %s",
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.error,
        letter.detail[:200],
    )
    DEADLETTERS.labels(letter.source_topic, letter.error).inc()
    EVENTS.labels(letter.source_topic, "deadletter").inc()
    await _send(deadletter, letter.source_topic, letter)


def _decode(event: EventT, model: type[BaseModel]) -> Any:
    msg = event.message
    return decode(event.value, model, msg.topic, msg.partition, msg.offset, event.key)


def _failure(event: EventT, error: str, exc: Exception) -> DeadLetter:
    """A decoded event the pipeline could not handle for a reason of its own (not an outage)."""
    msg = event.message
    return DeadLetter(
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=letter_key(event.key) if isinstance(event.key, bytes) else None,  # bounded: keys are not
        error=error,
        detail=f"{type(exc).__name__}: {exc}",
        payload_b64=base64.b64encode(event.value or b"").decode(),
    )


@app.agent(products_created)
async def on_products(stream: StreamT) -> None:
    # One event at a time, not ``stream.take_events``: faust's take buffer reads
    # ``Stream.current_event`` from a background reader, and around a rebalance (a broker
    # restart) it filed one event twice and skipped its neighbour, whose offset was then
    # committed unprocessed: a lost product (tests/test_failures.py). ``events()`` acks
    # each event only after this body has run for it. The cost is throughput (one upsert
    # per product); freshness is unchanged or better.
    async for event in stream.events():
        events = [event]
        good: list[tuple[EventT, ProductCreated]] = []
        for event in events:
            item = _decode(event, ProductCreated)
            if isinstance(item, DeadLetter):
                await _dead(item)
            else:
                good.append((event, item))
        sources = {p.product_id: (e, p) for e, p in good}  # the later event of a product wins
        for product in await _process_products(good):
            RE_TERMS.inc(len(product.new_re_terms))
            EVENTS.labels(products_created.get_topic_name(), "ok").inc()
            source_event, source = sources[product.product_id]
            _remember_version(source_event, source)
            await _send(products_enriched, str(product.product_id), product)
            if product.reenrich_pending:
                reason = "; ".join(product.enrichment_notes)[-500:]
                await _schedule_reenrich(ReenrichRequest(product=source, reason=reason), 0)


@contextmanager
def _as_current(event: EventT) -> Iterator[None]:
    """In a take_events batch faust has no current event, and a table write takes its
    changelog partition from it. Set the context variable faust reads, in this task only
    (not ``Stream.current_event``, which the batch's background reader uses for acks)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def _remember_version(event: EventT, product: ProductCreated) -> None:
    key = str(product.product_id)
    known = product_versions.get(key)
    if known is None or datetime.fromisoformat(known) <= product.event_time:
        with _as_current(event):
            product_versions[key] = product.event_time.isoformat()


def _superseded(product: ProductCreated) -> bool:
    known = product_versions.get(str(product.product_id))
    return known is not None and datetime.fromisoformat(known) > product.event_time


async def _schedule_reenrich(req: ReenrichRequest, failures: int) -> None:
    """Put the retry on its topic (durable), due after a doubling backoff."""
    s = svc().settings
    delay = min(s.reenrich_backoff_s * 2**failures, s.reenrich_max_backoff_s)
    due = req.model_copy(update={"attempt": failures + 1, "not_before": datetime.now(UTC) + timedelta(seconds=delay)})
    await _send(products_reenrich, str(req.product.product_id), due)


@app.agent(products_reenrich)
async def on_reenrich(stream: StreamT) -> None:
    """Products embedded from the fallback enricher, enriched again by the LLM when it
    answers: re-embedded and upserted under the same pk, a new ProductEnriched published."""
    async for event in stream.events():
        req = _decode(event, ReenrichRequest)
        if isinstance(req, DeadLetter):
            await _dead(req)
            continue
        wait = (req.not_before - datetime.now(UTC)).total_seconds()
        if wait > 0:  # backoff: the LLM failed moments ago; the retries are in due order
            await asyncio.sleep(wait)
        await _reenrich(event, req)


async def _reenrich(event: EventT, req: ReenrichRequest) -> None:
    if _superseded(req.product):  # a newer version of the product was handled since
        EVENTS.labels(event.message.topic, "superseded").inc()
        return
    try:
        product = await svc().products.reenrich(req.product)
    except EnrichmentError as exc:
        if req.attempt >= svc().settings.reenrich_max_attempts:
            await _dead(_failure(event, "reenrich_exhausted", exc))
        else:
            await _schedule_reenrich(req.model_copy(update={"reason": exc.reason[:500]}), req.attempt)
        return
    RE_TERMS.inc(len(product.new_re_terms))
    EVENTS.labels(event.message.topic, "ok").inc()
    await _send(products_enriched, str(product.product_id), product)


async def _process_products(batch: list[tuple[EventT, ProductCreated]]) -> list[ProductEnriched]:
    """The whole batch at once; if that fails (not an outage: those are retried inside),
    one by one, so a single poison product goes to the dead-letter topic alone."""
    if not batch:
        return []
    pipeline = svc().products
    try:
        return await pipeline.process([p for _, p in batch])
    except Exception:  # noqa: BLE001
        log.exception("product batch failed; retrying one by one")
    done: list[ProductEnriched] = []
    for event, product in batch:
        try:
            done.extend(await pipeline.process([product]))
        except Exception as exc:  # noqa: BLE001
            await _dead(_failure(event, "processing", exc))
    return done


@app.agent(interactions)
async def on_interactions(stream: StreamT) -> None:
    limit = svc().settings.sequence_length
    async for event in stream.events():
        item = _decode(event, Interaction)
        if isinstance(item, Interaction) and (event.key or b"").decode("utf-8", "replace") != item.user_id:
            # The table shard is chosen by the message key: a wrong key would file the
            # click under another partition than the user's requests read.
            item = _failure(event, "bad_key", ValueError(f"message key must be the user_id {item.user_id!r}"))
        if isinstance(item, DeadLetter):
            await _dead(item)
            continue
        raw = sequences.get(item.user_id)
        seq = UserSequence.from_table(raw) if raw else UserSequence()
        if seq.add(item, limit):
            sequences[item.user_id] = seq.model_dump(mode="json")
            svc().popularity.add(item.product_id)
        EVENTS.labels(event.message.topic, "ok").inc()


def _request_id(raw: bytes | None) -> str | None:
    """Best effort: the request_id of an invalid request, to answer it with an error."""
    try:
        data = json.loads(raw or b"")
        rid = data.get("request_id") if isinstance(data, dict) else None
        return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON (it is dead-lettered)
        return None


@app.agent(recommend_requests, concurrency=settings.request_concurrency)
async def on_requests(stream: StreamT) -> None:
    async for event in stream.events():
        req = _decode(event, RecommendRequest)
        if isinstance(req, DeadLetter):
            await _dead(req)
            rid = _request_id(event.value)
            if rid:  # tell the caller now instead of letting it time out
                await _send(
                    recommend_replies,
                    rid,
                    RecommendReply(
                        request_id=rid, user_id="?", strategy="error", error=f"invalid request: {req.detail}"
                    ),
                )
            continue
        with REQUEST_SECONDS.time():
            reply = await _answer(req)
        await _send(recommend_replies, req.request_id, reply)


async def _answer(req: RecommendRequest) -> RecommendReply:
    s = svc()
    if not s.popularity.built:
        s.popularity.rebuild(UserSequence.from_table(v) for v in sequences.values() if v)
    raw = sequences.get(req.user_id)
    try:
        return await s.recommender.answer(req, UserSequence.from_table(raw) if raw else None)
    except Exception as exc:  # noqa: BLE001 - the caller gets an explicit error, the worker goes on
        log.exception("request %s failed", req.request_id)
        return RecommendReply(
            request_id=req.request_id, user_id=req.user_id, strategy="error", error=f"{type(exc).__name__}: {exc}"
        )


@app.task
async def model_updates() -> None:
    """Hot swap on ``tailor.models.updated`` (see ``streams.model_swap``)."""
    await model_swap.watch(svc())


@app.task
async def row_cache_sync() -> None:
    """Forget cached Milvus rows of products any worker changed (see ``streams.row_sync``)."""
    await row_sync.watch(svc())
