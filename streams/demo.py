"""``tailor demo``: the whole path on the embedded runtime, shown to a person.

Starts ``tailor up`` as a child process (so the demo talks to the worker only through
Kafka, like a shop would), publishes a catalog and clicks, prints recommendations, then
publishes one brand-new product and measures when it first appears in a similar user's list.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import track
from rich.table import Table

from consumers.kafka import client_kwargs
from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient, RecommendTimeout
from consumers.vector_store import VectorStore
from models import registry
from schemas import topics
from schemas.events import Interaction, ProductCreated, ProductEnriched, Profile, RecommendReply
from schemas.settings import Settings
from streams.catalog import SAMPLE, load_catalog, sample_file
from streams.services import active_collection

console = Console(width=None if sys.stdout.isatty() else 140)


class DemoUser(BaseModel):
    user_id: str
    persona: str = ""
    profile: Profile | None = None
    clicks: list[int] = Field(default_factory=list)
    context: str | None = None


def _sample_users() -> tuple[list[DemoUser], ProductCreated]:
    users = [DemoUser.model_validate(u) for u in sample_file("users.json")]
    return users, ProductCreated.model_validate(sample_file("new_product.json"))


def _made_up_users(products: list[ProductCreated], n: int) -> tuple[list[DemoUser], ProductCreated]:
    """For any catalog: each user clicks items of one fine category; the new product is an
    unseen variant of the first user's category (RE removed, so it must be enriched)."""
    rng = random.Random(7)
    by_fine: dict[str, list[ProductCreated]] = {}
    for p in products:
        by_fine.setdefault(p.attributes.category()[1], []).append(p)
    fines = sorted(by_fine, key=lambda f: -len(by_fine[f]))[:n]
    users = [
        DemoUser(
            user_id=f"u-{fine}",
            persona=f"likes {fine}",
            clicks=[p.product_id for p in rng.sample(by_fine[fine], min(8, len(by_fine[fine])))],
        )
        for fine in fines
    ]
    base = by_fine[fines[0]][-1]
    attrs = base.attributes.model_copy(update={"reinforced_feature_value": None})
    new = ProductCreated(
        product_id=max(p.product_id for p in products) + 1,
        title=f"New {base.title}",
        description=base.description,
        attributes=attrs,
        price=base.price,
    )
    return users, new


class Worker:
    """``tailor up`` as a child process."""

    def __init__(self, settings: Settings) -> None:
        log_path = settings.data_dir / "logs" / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        out = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "up"], stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _wait_ready(settings: Settings, worker: Worker, timeout_s: float = 240) -> RecommendClient:
    deadline = time.monotonic() + timeout_s
    with console.status("starting broker, Milvus and worker ..."):
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"`tailor up` exited with {worker.proc.returncode}; see {worker.log_path}")
            client = RecommendClient(settings, timeout_s=5)
            try:
                await client.start()
                await client.recommend("demo-healthcheck", k=1)
                return client
            except (RecommendTimeout, RuntimeError, OSError, Exception):  # noqa: B014 - anything: not up yet
                await client.stop()
                await asyncio.sleep(1)
    raise TimeoutError(f"worker not ready in {timeout_s}s; see {worker.log_path}")


class EnrichedWatcher:
    """Reads tailor.products.enriched from now on, to know when products are indexed."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False)
        self.seen: dict[int, float] = {}

    async def start(self) -> None:
        await self.consumer.start()
        name = topics.PRODUCTS_ENRICHED.name
        parts = [TopicPartition(name, p) for p in range(topics.PRODUCTS_ENRICHED.partitions)]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:
            await self.consumer.position(tp)

    async def wait_for(self, ids: set[int], timeout_s: float, label: str) -> None:
        deadline = time.monotonic() + timeout_s
        with console.status(f"{label}: waiting for enrichment + indexing ..."):
            while not ids <= self.seen.keys():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{label}: {len(ids - self.seen.keys())} products not indexed in {timeout_s}s")
                batch = await self.consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        e = ProductEnriched.model_validate_json(rec.value)
                        self.seen.setdefault(e.product_id, time.monotonic())

    async def stop(self) -> None:
        await self.consumer.stop()


def _show(user: DemoUser, reply: RecommendReply, titles: dict[int, str]) -> None:
    seen = ", ".join(titles.get(p, str(p)) for p in user.clicks[-3:]) or f"(no clicks; context: {user.context!r})"
    table = Table(title=f"{user.user_id} — {user.persona}\nlast seen: {seen}", title_justify="left", show_lines=False)
    for col in ("#", "product", "title", "category", "score", "reason"):
        table.add_column(col)
    for i, item in enumerate(reply.items, 1):
        table.add_row(str(i), str(item.product_id), item.title, item.fine, f"{item.score:.3f}", item.reason)
    console.print(table)
    timings = ", ".join(f"{k}={v:.1f}" for k, v in reply.timings_ms.items())
    console.print(f"  strategy={reply.strategy} model={reply.model_version} {timings}\n")


async def _flow(settings: Settings, catalog: str, n_users: int, worker: Worker) -> int:
    products = list(load_catalog(catalog))
    users, new_product = _sample_users() if catalog == SAMPLE else _made_up_users(products, n_users)
    titles = {p.product_id: p.title for p in products}
    client = await _wait_ready(settings, worker)
    watcher = EnrichedWatcher(settings)
    await watcher.start()
    try:
        async with TailorProducer(settings) as producer:
            t0 = time.monotonic()
            for product in track(products, description=f"publishing {len(products)} products", console=console):
                await producer.publish_product(product)
            await watcher.wait_for({p.product_id for p in products}, 300, "catalog")
            console.print(
                f"[green]catalog of {len(products)} products enriched, embedded and in Milvus "
                f"in {time.monotonic() - t0:.1f}s"
            )
            await _publish_clicks(producer, users)
            await _wait_sequences(client, users)
            for user in users:
                _show(
                    user, await client.recommend(user.user_id, k=8, context=user.context, profile=user.profile), titles
                )
            new_product = await asyncio.to_thread(_unused_id, settings, new_product)
            code = await _cold_start(producer, client, watcher, users, new_product, products)
            if code:
                return code
            await _publish_sessions(producer, products)
            return await _retrain_live(settings, client, _target_user(users, new_product, products), titles)
    finally:
        await watcher.stop()
        await client.stop()


async def _publish_clicks(producer: TailorProducer, users: list[DemoUser]) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    n = 0
    for user in users:
        for i, pid in enumerate(user.clicks):
            # Fixed event ids: running the demo again replays the same clicks, which the
            # table recognises and does not count twice.
            event = Interaction(
                event_id=f"demo-{user.user_id}-{i}-{pid}",
                user_id=user.user_id,
                product_id=pid,
                ts=start + timedelta(minutes=i),
            )
            await producer.publish_interaction(event)
            n += 1
    console.print(f"[green]published {n} clicks for {sum(1 for u in users if u.clicks)} users")


async def _wait_sequences(client: RecommendClient, users: list[DemoUser], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    for user in (u for u in users if u.clicks):
        while (await client.recommend(user.user_id, k=1)).strategy != "sequence":
            if time.monotonic() > deadline:
                raise TimeoutError(f"clicks of {user.user_id} not in the sequence table after {timeout_s}s")
            await asyncio.sleep(0.1)


def _unused_id(settings: Settings, product: ProductCreated) -> ProductCreated:
    """An earlier demo run (data stays in var/) already indexed the new product: give it
    the next free id, so the cold-start timing is for a product Milvus has never seen."""
    store = VectorStore(settings.milvus, active_collection(settings))
    try:
        pid = product.product_id
        while store.get([pid], with_vectors=False):
            pid += 1
    finally:
        store.close()
    return product.model_copy(update={"product_id": pid})


def _target_user(users: list[DemoUser], new_product: ProductCreated, products: list[ProductCreated]) -> DemoUser:
    fine = {p.product_id: p.attributes.category()[1] for p in products}
    want = new_product.attributes.category()[1]
    return max((u for u in users if u.clicks), key=lambda u: Counter(fine.get(c) for c in u.clicks)[want])


async def _cold_start(
    producer: TailorProducer,
    client: RecommendClient,
    watcher: EnrichedWatcher,
    users: list[DemoUser],
    new_product: ProductCreated,
    products: list[ProductCreated],
) -> int:
    user = _target_user(users, new_product, products)
    console.rule(
        f"cold start: new product {new_product.product_id} '{new_product.title}' (no clicks, no RE attributes)"
    )
    t0 = time.monotonic()
    await producer.publish_product(new_product)
    deadline, polls = t0 + 30, 0
    while time.monotonic() < deadline:
        reply = await client.recommend(user.user_id, k=10)
        polls += 1
        ranks = [i for i, it in enumerate(reply.items, 1) if it.product_id == new_product.product_id]
        if ranks:
            elapsed = time.monotonic() - t0
            indexed = watcher.seen.get(new_product.product_id)
            _show(user, reply, {p.product_id: p.title for p in products})
            console.print(
                f"[bold green]COLD START: product {new_product.product_id} appeared in {user.user_id}'s list "
                f"at rank {ranks[0]} "
                f"{elapsed:.3f}s after publishing[/] (first reply containing it, poll #{polls}"
                + (f"; ProductEnriched seen by the demo at {indexed - t0:.3f}s" if indexed else "")
                + ")"
            )
            return 0
        await asyncio.sleep(0.02)
    console.print(
        f"[bold red]COLD START: product {new_product.product_id} did not appear in {user.user_id}'s top-10 within 30s"
    )
    return 1


async def _publish_sessions(producer: TailorProducer, products: list[ProductCreated], shoppers: int = 150) -> None:
    """Simulated shoppers, so the retrain has a log to learn from: each browses one
    category, now and then a neighbour of the same coarse group. Seeded, with fixed event
    ids: a rerun replays the same sessions and the table does not count them twice."""
    rng = random.Random(7)
    by_fine: dict[str, list[int]] = {}
    coarse_of: dict[str, str] = {}
    for p in products:
        coarse, fine = p.attributes.category()
        by_fine.setdefault(fine, []).append(p.product_id)
        coarse_of[fine] = coarse
    fines = sorted(by_fine)
    start = datetime.now(UTC) - timedelta(days=1)
    for n in range(shoppers):
        fine = fines[n % len(fines)]
        near = [f for f in fines if coarse_of[f] == coarse_of[fine]]
        for i in range(8):
            pick = fine if rng.random() < 0.8 else rng.choice(near)
            pid = rng.choice(by_fine[pick])
            event = Interaction(
                event_id=f"demo-shopper-{n}-{i}",
                user_id=f"shopper-{n}",
                product_id=pid,
                ts=start + timedelta(minutes=i),
            )
            await producer.publish_interaction(event)
    console.print(f"[green]published {shoppers * 8} clicks of {shoppers} simulated shoppers for the retrain")


async def _retrain_live(settings: Settings, client: RecommendClient, user: DemoUser, titles: dict[int, str]) -> int:
    """``tailor retrain`` on the topics the demo just wrote, while a request loop runs:
    the worker swaps to the new version (user tower, DeepFM, self-attention reranker)
    without dropping a request."""
    console.rule("offline retrain from the logged topics; the worker hot-swaps while requests flow")
    stop, replies = asyncio.Event(), []

    async def ask_forever() -> None:
        while not stop.is_set():
            replies.append(await client.recommend(user.user_id, k=10))
            await asyncio.sleep(0.05)

    load = asyncio.create_task(ask_forever())
    # A separate process, as in production (and the training keeps this process' GIL free).
    log_path = settings.data_dir / "logs" / "retrain.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            # Short epochs: the demo shows the hot swap, bench/eval measures quality.
            sys.executable, "-m", "streams.cli", "retrain", "--user-epochs", "4", "--deepfm-epochs", "2",
            "--diversity-epochs", "2",
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        with console.status(f"tailor retrain running (log: {log_path}) ..."):
            if await proc.wait() != 0:
                stop.set()
                await load
                console.print(f"[bold red]retrain failed, see {log_path}")
                return 1
    manifest = registry.latest_manifest(settings.models_path)
    assert manifest is not None
    console.print(
        f"retrained {manifest.version} in {manifest.metrics.get('train_seconds', 0):.0f} s; on each user's last click: "
        + ", ".join(f"{k}={v:.3f}" for k, v in manifest.metrics.items() if "@" in k)
    )
    deadline = time.monotonic() + 60
    while not (replies and replies[-1].model_version == manifest.version) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await load
    errors = [r for r in replies if r.strategy == "error"]
    versions = list(dict.fromkeys(r.model_version for r in replies))
    _show(user, replies[-1], titles)
    ok = replies[-1].model_version == manifest.version and not errors
    console.print(
        f"[bold {'green' if ok else 'red'}]HOT SWAP: {len(replies)} requests answered during retrain and swap, "
        f"{len(errors)} errors; versions served in order: {' -> '.join(versions)}"
    )
    return 0 if ok else 1


def run_demo(settings: Settings, catalog: str, n_users: int) -> int:
    if not registry.is_trained(settings.models_path):
        # The first run trains the item tower on the catalog it is about to publish (the
        # new product of the cold-start step is not in it), so vectors mean something.
        from models.train_item import TrainConfig
        from streams.training import train_and_publish

        console.rule("no trained item tower yet: training one on the demo catalog")
        train_and_publish(catalog, settings.models_path, TrainConfig())
    worker = Worker(settings)
    try:
        return asyncio.run(_flow(settings, catalog, n_users, worker))
    finally:
        with console.status(
            "stopping the worker, broker and Milvus (data stays in " + str(settings.data_dir) + ") ..."
        ):
            worker.stop()
