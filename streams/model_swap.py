"""Model hot swap: ``tailor.models.updated`` -> load the version -> (new item space:
re-embed the catalog into the new collection while writes go to both) -> one reference
swap. Requests keep being answered throughout by whichever version they started with.

Every worker listens with its own group-less consumer (the update is a broadcast, not
work to share), and checks ``LATEST`` once it is listening, so an update published while
it was starting is not missed."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from consumers.idle_fetch import pause_consumer_idle_fetches
from consumers.kafka import client_kwargs
from consumers.vector_store import VectorStore
from models import registry
from schemas import topics
from schemas.events import ModelsUpdated
from schemas.settings import Settings
from streams.products import ProductPipeline, from_row
from streams.services import Live, Services, make_live, open_store

log = logging.getLogger("tailor.swap")
_swap_lock = asyncio.Lock()


async def fill(target: ProductPipeline, source: VectorStore) -> int:
    """Re-embed every product of ``source`` the target collection does not have yet
    (ids the mirror wrote since the swap began are newer: never overwritten)."""
    present = {int(r["product_id"]) for rows in await asyncio.to_thread(_scan, target.store) for r in rows}
    written = 0
    for rows in await asyncio.to_thread(_scan, source):
        async with target.write_lock:
            todo = [from_row(r) for r in rows if int(r["product_id"]) not in present | target.mirrored]
            if todo:
                await asyncio.to_thread(target.encoder.encode_growing, todo)
                await target.index(todo)
                written += len(todo)
    return written


def _scan(store: VectorStore) -> list[list[dict]]:
    return list(store.scan()) if store.exists() else []


def fill_from_parent(settings: Settings, live: Live) -> None:
    """At start-up: a version in a new item space whose catalog was never (fully)
    re-embedded (the worker was down during the swap) takes it from its parent's space."""
    parent = live.manifest.parent
    if not parent or not (settings.models_path / parent / "manifest.json").exists():
        return
    space = registry.load(settings.models_path, parent).manifest.space
    if space == live.manifest.space:
        return
    source = open_store(settings, space)
    try:
        if source.exists():
            n = asyncio.run(fill(live.products, source))
            live.products.write_lock = asyncio.Lock()  # not the one bound to that finished loop
            log.info("re-embedded %d products from item space %s into %s", n, space, live.store.collection)
    finally:
        source.close()


async def swap_to(services: Services, version: str) -> bool:
    """Load ``version`` and make it live; False when it already is."""
    async with _swap_lock:
        old = services.live
        if version == old.version:
            return False
        model = await asyncio.to_thread(registry.load, services.settings.models_path, version)
        same_space = model.manifest.space == old.manifest.space
        inherit = services.settings.vocab_file(old.version) if same_space else None
        store = old.store if same_space else None
        new = await asyncio.to_thread(
            make_live, services.settings, model, services.enricher, services.popularity, store, inherit
        )
        if not same_space:
            old.products.mirror = new.products  # from now on every write lands in both spaces
            n = await fill(new.products, old.store)
            log.info("re-embedded %d products into %s for %s", n, new.store.collection, version)
        new.recommender.follow(old.recommender)  # no new-version reply before an old one
        services.live = new  # the swap: one reference; in-flight work keeps the old one
        if services.settings.milvus_alias and not same_space:
            await asyncio.to_thread(new.store.point_alias, services.settings.collection)
        old.products.mirror = None
        if not same_space:  # the old client outlives the requests that may still hold it
            asyncio.get_running_loop().call_later(60, old.store.close)
            if services.settings.drop_old_spaces:
                await _drop_older_spaces(services.settings, new.store, old.store.collection)
        log.info("model %s live (was %s; item space %s)", version, old.version, new.manifest.space)
        return True


async def _drop_older_spaces(settings: Settings, live: VectorStore, previous: str) -> None:
    """Only the live item space and the one it replaced are kept: a worker that has not
    swapped yet serves (and mirrors from) the previous one; anything older is dead weight
    (a rollback to an old version re-embeds from the live space, as any new space does)."""
    keep = {live.collection, previous, settings.collection}  # the alias name is never a space
    try:
        dropped = await asyncio.to_thread(live.drop_others, f"{settings.collection}__", keep)
    except Exception as exc:  # noqa: BLE001 - housekeeping must never fail a swap
        log.warning("old item spaces not dropped: %s", exc)
        return
    if dropped:
        log.info("dropped the collections of older item spaces: %s", ", ".join(dropped))


def _decode(raw: bytes | None) -> ModelsUpdated | None:
    try:
        return ModelsUpdated.model_validate_json(raw or b"")
    except ValidationError as exc:
        log.warning("ignoring a bad %s message: %s", topics.MODELS_UPDATED.name, exc)
        return None


MODEL_UPDATES_IDLE_PAUSE_MS = 200.0  # after an empty fetch of the model-updates topic


async def watch(services: Services) -> None:
    """Run for the worker's lifetime: swap on every update, never crash on one."""
    consumer = AIOKafkaConsumer(
        topics.MODELS_UPDATED.name,
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        **client_kwargs(services.settings),
    )
    await consumer.start()
    # Updates are rare and a swap takes seconds: at the process's 2 ms pause this one idle
    # partition was a quarter of an idle worker's CPU (py-spy).
    pause_consumer_idle_fetches(consumer, MODEL_UPDATES_IDLE_PAUSE_MS)
    try:
        await consumer.seek_to_end()
        await _try_swap(services, registry.latest_version(services.settings.models_path))
        async for msg in consumer:
            update = _decode(msg.value)
            if update is not None:
                await _try_swap(services, update.model_version)
    finally:
        await consumer.stop()


async def _try_swap(services: Services, version: str | None) -> None:
    if not version:
        return
    try:
        await swap_to(services, version)
    except Exception:  # noqa: BLE001 - a broken version must not take the worker down
        log.exception("could not swap to model %s; staying on %s", version, services.live.version)


__all__ = ["fill", "fill_from_parent", "swap_to", "watch"]
