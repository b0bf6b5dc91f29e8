"""Freshness: how soon a newly published product is usable, in a running system.

    python -m bench.freshness [--items 100000] [--products 200] [--rate 4] [--zero-shot both]
                              [--models DIR] [--k 10] [--history 2] [--poll-ms 50]

Starts a real noida-db broker, an embedded Milvus and the real worker (``tailor worker``,
``TAILOR_ENRICHER=rules``) on free ports in a temp dir. The ``--items`` catalog is seeded
directly, not through Kafka (synthetic products of the sample's generator family, embedded
with the worker's own ``ItemEncoder`` in batches and upserted into its Milvus collection).
One made-up user per new product clicked the ``--history`` catalog items nearest to it and
then its *twin*: a catalog item with the same content under another id (last season's
listing; enriched here as the worker will enrich the new product, so it has the same
vector; seeded with the catalog), which the user clicked, carted and bought last. The twin
is seen, hence excluded, and the new product is the one unseen item as close to the
user's vector as the twin, however dense the near-duplicates around it (100k synthetic
items are): the reply time measures freshness, not ranking quality. Then
``--products`` new products (no RE attributes: the worker must enrich
them) are published via ``TailorProducer`` at ``--rate`` per second (after ``--warmup``
products, not measured), and for each we time
publish (before the send) ->

  * in Milvus: found by ``get`` on its id (primary keys only, all pending ids in one call
    every ``--milvus-poll-ms`` from another client; at 100k rows with upserts coming in a
    ``get`` costs Milvus 15-50 ms, so polling faster loads the 2-core machine noticeably);
  * ProductEnriched: the timestamp of the worker's event about it on
    ``tailor.products.enriched`` (read after the run; sent after the Milvus upsert);
  * in a reply: first ``RecommendClient`` reply (top-``--k``) for its user that contains it
    (the user is polled every ``--poll-ms`` once the product is in Milvus, not before, to
    keep the load the polling adds down; the resolution is that plus one request).

``--no-poll`` measures only the ProductEnriched times, without the polling's load on
Milvus and the worker (at 100k items a ``get`` costs Milvus 15-50 ms, a request ~3 calls).
With ``--zero-shot both`` the worker runs once with the rules enricher's MiniLM zero-shot
matching and once without (``TAILOR_RULES_ZERO_SHOT=false``), on the same catalog.
Baselines, measured in the same run on the same Milvus with the worker idle: Milvus alone
(upsert one row -> ``get`` finds it) and the product pipeline in process (rules enrich +
embed + upsert, no Kafka, no worker). Goal: p99 <= 1 s with the rules enricher.
Writes bench/results/freshness.csv and freshness.png (freshness_nopoll.* with ``--no-poll``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import synth
from bench.report import console, emit
from bench.system import Catalog, System, ensure_model, item_row, open_loop, plot_latency, ratios, running, stats
from consumers.enrichment import RulesEnricher
from consumers.kafka import client_kwargs
from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient, RecommendTimeout
from models import registry
from schemas import topics
from schemas.events import Interaction, ProductCreated, ProductEnriched
from schemas.limits import MAX_K
from streams.products import to_enriched

GOAL_MS = 1000.0
NEW_ID = 20_000_001  # above the catalog's ids (bench.synth.FIRST_ID + 100k and more)


async def enriched_times(system: System, wanted: set[int], timeout_s: float = 30.0) -> dict[int, float]:
    """When the worker sent each product's ProductEnriched: the record timestamps (the
    producer's clock, this host), read once after the run. A consumer left open during the
    run would busy-poll the broker (noida-db answers an empty fetch at once) and take CPU
    from the system under test."""
    consumer = AIOKafkaConsumer(**client_kwargs(system.settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        name = topics.PRODUCTS_ENRICHED.name
        parts = [TopicPartition(name, p) for p in range(topics.PRODUCTS_ENRICHED.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen: dict[int, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    pid = ProductEnriched.model_validate_json(rec.value or b"").product_id
                    if pid in wanted:
                        seen.setdefault(pid, rec.timestamp / 1000)
        return seen
    finally:
        await consumer.stop()


TWIN_OFFSET = 50_000_000  # a twin's id = its new product's id + this


def twins(new: list[ProductCreated], zero_shot: bool, version: str) -> list[ProductEnriched]:
    """Per new product, a catalog item with the same content under another id (last season's
    listing of it), enriched as the worker will enrich the new one (same rules enricher
    mode): the same vector. Seeded with the catalog."""
    enricher = RulesEnricher(zero_shot=zero_shot)
    found = enricher.enrich_now(new)
    return [
        to_enriched(p.model_copy(update={"product_id": p.product_id + TWIN_OFFSET}), e, version=version)
        for p, e in zip(new, found, strict=True)
    ]


Event = tuple[int, str]  # (product_id, kind)


def matching_users(system: System, catalog: Catalog, new: list[ProductCreated], history: int) -> dict[int, list[Event]]:
    """Per new product, its user's history: clicks on the ``history`` catalog items nearest
    to it, then its twin clicked, carted and bought (the newest and heaviest events). The
    twin is seen, so excluded from replies, and the new product is then the one unseen item
    as close as the twin to the user's vector, however dense the near-duplicates around it:
    the reply measures freshness, not ranking quality."""
    index = {int(pid): i for i, pid in enumerate(catalog.ids)}
    twin_vectors = catalog.vectors[[index[p.product_id + TWIN_OFFSET] for p in new]]
    found = system.build_services().store.search_many(twin_vectors, history + 1)
    users = {}
    for p, hits in zip(new, found, strict=True):
        twin = p.product_id + TWIN_OFFSET
        near = [h.product_id for h in hits if h.product_id != twin][:history]
        users[p.product_id] = [(pid, "click") for pid in near[::-1]] + [
            (twin, k) for k in ("click", "cart", "purchase")
        ]
    return users


async def publish_histories(system: System, histories: dict[str, list[Event]]) -> None:
    """Publish the users' events and wait until the worker has applied them all."""
    topic = topics.INTERACTIONS.name
    before = system.events_ok(topic)
    start = datetime.now(UTC) - timedelta(hours=1)
    events = [
        Interaction(event_id=f"{user}-{i}", user_id=user, product_id=pid, kind=kind, ts=start + timedelta(seconds=i))
        for user, history in histories.items()
        for i, (pid, kind) in enumerate(history)
    ]
    async with TailorProducer(system.settings) as producer:
        for i in range(0, len(events), 500):
            await asyncio.gather(*(producer.publish_interaction(e) for e in events[i : i + 500]))
    deadline = time.monotonic() + 120
    while system.events_ok(topic) < before + len(events):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not apply the users' events in 120 s")
        await asyncio.sleep(0.2)


async def measure(
    system: System, new: list[ProductCreated], users: dict[int, str], args: argparse.Namespace
) -> dict[str, dict[int, float]]:
    """Publish ``new`` on schedule; per product the seconds to each milestone, and its rank."""
    store = system.store()
    published: dict[int, float] = {}
    wall: dict[int, float] = {}  # time.time() at publish, for the record timestamps
    in_milvus: dict[int, float] = {}
    in_reply: dict[int, float] = {}
    rank: dict[int, float] = {}
    pending: set[int] = set()
    found: dict[int, asyncio.Event] = {}
    done = asyncio.Event()

    async def poll_milvus() -> None:
        # Until every product is found, or the last one published has had its timeout.
        while not done.is_set() or (pending and time.perf_counter() - max(published.values()) < args.timeout):
            if pending:
                rows = await asyncio.to_thread(in_milvus_now, store, sorted(pending))
                now = time.perf_counter()
                for pid in rows:
                    if pid in pending:
                        in_milvus[pid] = now
                        pending.discard(pid)
                        found[pid].set()
            await asyncio.sleep(args.milvus_poll_ms / 1000)

    async def watch_reply(client: RecommendClient, pid: int, t0: float) -> None:
        # No reply can hold it before it is in Milvus: polling from then on keeps the load
        # the measurement adds to the worker down.
        deadline = t0 + args.timeout
        try:
            await asyncio.wait_for(found[pid].wait(), args.timeout)
        except TimeoutError:
            return
        while time.perf_counter() < deadline:
            try:
                reply = await client.recommend(users[pid], k=args.k, diversity_lambda=args.diversity)
            except RecommendTimeout:
                continue
            ranks = [i for i, it in enumerate(reply.items, 1) if it.product_id == pid]
            if ranks:
                in_reply[pid], rank[pid] = time.perf_counter(), ranks[0]
                return
            await asyncio.sleep(args.poll_ms / 1000)

    poller = asyncio.create_task(poll_milvus() if not args.no_poll else asyncio.sleep(0))
    async with TailorProducer(system.settings) as producer, RecommendClient(system.settings, timeout_s=5) as client:

        async def fire(i: int, _due: float) -> None:
            product = new[i]
            found[product.product_id] = asyncio.Event()
            t0 = time.perf_counter()
            wall[product.product_id] = time.time()
            await producer.publish_product(synth.without_re(product))
            published[product.product_id] = t0
            if not args.no_poll:
                pending.add(product.product_id)
                await watch_reply(client, product.product_id, t0)

        await open_loop(args.rate, len(new) / args.rate, fire)
        done.set()
        await poller
        # Where the missed ones are: their rank in the user's longest list, once.
        missed: dict[int, int | str | None] = {}
        for pid in set(in_milvus) - set(in_reply):
            try:
                reply = await client.recommend(users[pid], k=MAX_K, diversity_lambda=args.diversity)
            except RecommendTimeout:
                missed[pid] = "timeout"
                continue
            missed[pid] = next((i for i, it in enumerate(reply.items, 1) if it.product_id == pid), None)
        if missed:
            console.print(f"  missed in top-{args.k}; rank in top-{MAX_K} at the end (None: not there): {missed}")
    enriched = await enriched_times(system, set(published))
    store.close()

    def since(marks: dict[int, float]) -> dict[int, float]:
        return {pid: (t - published[pid]) * 1000 for pid, t in marks.items() if pid in published}

    first = min(published.values(), default=0.0)
    return {
        "milvus": since(in_milvus),
        "enriched": {pid: (t - wall[pid]) * 1000 for pid, t in enriched.items()},
        "reply": since(in_reply),
        "rank": rank,
        "published": {pid: t - first for pid, t in published.items()},
    }


def baselines(system: System, n: int, first_id: int) -> dict[str, list[float]]:
    """Measured with the worker idle, on the same Milvus collection."""
    services = system.build_services()
    store = system.store()
    rng = np.random.default_rng(3)
    milvus_alone = []
    for i in range(n):
        v = rng.normal(size=128).astype(np.float32)
        pid = first_id + i
        t0 = time.perf_counter()
        store.upsert([item_row(pid, v / np.linalg.norm(v))])
        while not store.get([pid], with_vectors=False):
            time.sleep(0.001)
        milvus_alone.append((time.perf_counter() - t0) * 1000)
    in_process = []
    for product in synth.products(n, seed=99, first_id=first_id + n):
        product = synth.without_re(product)
        t0 = time.perf_counter()
        asyncio.run(services.products.process([product]))
        while not store.get([product.product_id], with_vectors=False):
            time.sleep(0.001)
        in_process.append((time.perf_counter() - t0) * 1000)
    store.close()
    return {"milvus": milvus_alone, "in_process": in_process}


def in_milvus_now(store: Any, ids: list[int]) -> set[int]:
    """The ids Milvus returns now (primary keys only: the cheapest ``get``)."""
    return {int(r["product_id"]) for r in store.client.get(store.collection, ids=ids, output_fields=["product_id"])}


async def warm_up(system: System, products: list[ProductCreated], rate: float, timeout_s: float = 120) -> None:
    """Products through the worker before measuring (its first batches are slow: lazy
    initialisation, first RE terms), until all are in Milvus."""
    store = system.store()
    try:
        async with TailorProducer(system.settings) as producer:
            for product in products:
                await producer.publish_product(product)
                await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + timeout_s
        ids = [p.product_id for p in products]
        while len(await asyncio.to_thread(store.get, ids, False)) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"warm-up products not in Milvus after {timeout_s}s")
            await asyncio.sleep(0.1)
    finally:
        store.close()


def run_mode(
    system: System, catalog: Catalog, zero_shot: bool, new: list[ProductCreated], args: argparse.Namespace
) -> dict[str, Any]:
    label = "rules, zero-shot on" if zero_shot else "rules, zero-shot off"
    system.stop_worker()
    startup = system.start_worker(TAILOR_RULES_ZERO_SHOT=str(zero_shot).lower())
    console.print(f"[bold]{label}[/]: worker ready in {startup:.1f}s")
    histories = matching_users(system, catalog, new, args.history)
    users = {pid: f"fresh-{label[-3:].strip()}-{pid}" for pid in histories}
    asyncio.run(publish_histories(system, {users[pid]: hist for pid, hist in histories.items()}))
    if args.warmup:
        first = new[0].product_id + 50_000
        warm = [synth.without_re(p) for p in synth.products(args.warmup, seed=new[0].product_id, first_id=first)]
        asyncio.run(warm_up(system, warm, args.rate))
    console.print(f"  {len(users)} users' clicks applied; publishing {len(new)} products at {args.rate}/s")
    result = asyncio.run(measure(system, new, users, args))
    result["label"] = label  # type: ignore[assignment]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000, help="catalog size seeded into Milvus")
    ap.add_argument("--products", type=int, default=200, help="new products published")
    ap.add_argument("--rate", type=float, default=4.0, help="new products per second")
    ap.add_argument("--zero-shot", choices=["on", "off", "both"], default="both")
    ap.add_argument("--k", type=int, default=10, help="reply length the new product must appear in")
    ap.add_argument("--history", type=int, default=2, help="similar items each matching user clicked before")
    ap.add_argument("--diversity", type=float, default=0.8, help="the requests' diversity_lambda (their default)")
    ap.add_argument("--poll-ms", type=float, default=50.0, help="pause between a user's requests")
    ap.add_argument("--milvus-poll-ms", type=float, default=100.0, help="pause between Milvus get polls")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds before a product counts as missed")
    ap.add_argument("--baseline", type=int, default=50, help="samples of each baseline")
    ap.add_argument("--warmup", type=int, default=10, help="products through the worker before measuring")
    ap.add_argument(
        "--no-poll", action="store_true", help="only the ProductEnriched times: no Milvus or reply polling load"
    )
    ap.add_argument("--models", type=Path, help="model dir (LATEST); default TAILOR_MODEL_DIR or train on sample")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir (logs)")
    args = ap.parse_args()
    models = ensure_model(args.models)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.zero_shot]
    version = registry.latest_version(models) or ""
    # New products per mode (no RE: the worker enriches them), and their twins in the catalog.
    news = [
        [synth.without_re(p) for p in synth.products(args.products, seed=1000 + i, first_id=NEW_ID + i * 100_000)]
        for i in range(len(modes))
    ]
    extra = [t for zs, new in zip(modes, news, strict=True) for t in twins(new, zs, version)]
    with running(models, keep=args.keep) as system:
        catalog = system.seed_catalog(args.items, extra=extra)
        console.print(
            f"seeded {args.items:,} catalog items + {len(extra)} twins of the new products directly into Milvus "
            f"in {catalog.seconds:.0f}s"
        )
        results = [run_mode(system, catalog, zs, new, args) for zs, new in zip(modes, news, strict=True)]
        system.stop_worker()
        base = baselines(system, args.baseline, 90_000_001)
        system_zero_shot = system.settings.rules_zero_shot
    base_rows = [
        {"row": "baseline: Milvus alone, upsert 1 row -> get finds it", "enricher": "-", **stats(base["milvus"])},
        {
            "row": "baseline: in process, enrich + embed + upsert -> get (no Kafka)",
            "enricher": "rules, zero-shot " + ("on" if system_zero_shot else "off"),
            **stats(base["in_process"]),
        },
    ]
    rows: list[dict[str, Any]] = []
    series: dict[str, list[float]] = {}
    timeline: dict[str, list[tuple[float, float]]] = {}
    names = {
        "milvus": "publish -> in Milvus (get by id)",
        "enriched": "publish -> ProductEnriched on Kafka",
        "reply": f"publish -> first top-{args.k} reply with it",
    }
    for res in results:
        for key, name in names.items():
            values = list(res[key].values())
            if args.no_poll and key != "enriched":
                continue
            row = {"row": name, "enricher": res["label"], **stats(values), "missed": args.products - len(values)}
            if key == "reply" and res["rank"]:
                row["mean_rank"] = float(np.mean(list(res["rank"].values())))
            rows.append(row)
            if key != "enriched":
                series[f"{name} [{res['label']}]"] = values
                at = res["published"]
                timeline[f"{key} [{res['label']}]"] = [(at[pid], ms) for pid, ms in res[key].items() if pid in at]
    series["baseline: Milvus alone"] = base["milvus"]
    series["baseline: in process (no Kafka)"] = base["in_process"]
    rows += base_rows
    ratios(rows, base_rows[0])
    for row in rows:
        row["goal_p99<=1s"] = (
            "-" if row["row"].startswith("baseline") else ("yes" if row.get("p99_ms", 1e9) <= GOAL_MS else "NO")
        )
    title = (
        f"Freshness: {args.items:,}-item catalog + twins (seeded directly into Milvus), {args.products} new products "
        f"(no RE: enriched by the worker) at {args.rate:g}/s, users: {args.history} nearest + twin bought, "
        f"top-{args.k} replies (diversity_lambda {args.diversity:g}) polled every {args.poll_ms:g} ms once in Milvus; "
        "x_ = ratio to Milvus alone"
    )
    name = "freshness_nopoll" if args.no_poll else "freshness"
    emit(name, title, rows)
    plot_latency(name, title, series, GOAL_MS, timeline)


if __name__ == "__main__":
    main()
