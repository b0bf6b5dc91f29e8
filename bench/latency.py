"""Request-reply latency under a fixed arrival rate, through Kafka, against the real worker.

    python -m bench.latency [--items 100000] [--users 1000] [--history 20] [--rate 50]
                            [--seconds 60] [--sweep 10,25] [--baseline-seconds 20] [--models DIR]
                            [--stages trained|none] [--stage-epochs 1]
                            [--variant label:TAILOR_VAR=value,... ...] [--replicas N ...]

Starts a real noida-db broker, an embedded Milvus and the real worker on free ports in a
temp dir, seeds an ``--items`` catalog directly into the worker's Milvus collection
(synthetic products of the sample's generator family, embedded with the worker's own
``ItemEncoder``, rows with their STD/RE features as the worker writes them). With
``--stages trained`` (the default) the ranking stages (user tower, DeepFM, self-attention
reranker) are first trained for ``--stage-epochs`` on the benchmark's users by ``tailor
retrain``'s code, so every request runs the full path. It publishes ``--history`` clicks
for each of ``--users`` users (items of one or two fine categories each) and waits until
the worker has applied them. Then, open loop,
``--rate`` requests per second for ``--seconds`` (each sent on schedule whether or not the
earlier ones were answered; latency counts from the scheduled time) go through
``RecommendClient`` for random users (``k=10``, seen items excluded). The ``--sweep`` rates
are measured first (``--sweep-seconds`` each, the worker drained in between), so the table
also shows where the system stops keeping up on this machine ("served_per_s" below the rate:
an open-loop queue that only grows).

Reported: client-observed p50/p95/p99 and a breakdown by stage from the replies'
``timings_ms`` (every ``*_ms`` key the worker sends), plus "kafka round trip" = client
latency - ``total_ms`` (request produce + the worker's consume/produce + reply consume).
Baselines in the same run, same catalog and users, worker stopped: the request path in
process (``Recommender.answer`` of ``streams.serving``, built as the worker builds it, no
Kafka) at each rate, and one bare Milvus top-100 search at ``--rate``. Goal: p99 <= 100 ms.
Also the cores each process used at each rate (worker, broker, Milvus, this load generator).
Each ``--variant`` runs the Kafka rates again with a fresh worker (and this process's
client) under other settings, against the same catalog, users and baselines, so settings
are compared within one run (e.g. ``--variant no-compression:TAILOR_KAFKA_COMPRESSION=none``).
Each ``--replicas N`` does the same with N worker processes of the default settings in one
consumer group (faust splits the partitions between them; the cores column sums them).
Writes bench/results/latency.csv, latency_stages.csv, latency_cpu.csv and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench import synth
from bench.report import console, emit
from bench.system import Catalog, System, cores, ensure_model, open_loop, plot_latency, ratios, running, stats
from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient
from schemas import topics
from schemas.events import Interaction, ProductEnriched, RecommendReply, RecommendRequest
from streams.sequences import UserSequence
from streams.worker import freeze_startup_heap

GOAL_MS = 100.0


def make_users(catalog: Catalog, n: int, history: int, seed: int = 0) -> dict[str, list[int]]:
    """Each user clicks ``history`` items of one or two fine categories."""
    rng = random.Random(seed)
    groups = {f: ix for f, ix in catalog.by_fine().items() if len(ix) >= history}
    fines = sorted(groups)
    users = {}
    for u in range(n):
        picked = rng.sample(fines, rng.choice((1, 2)))
        pool = np.concatenate([groups[f] for f in picked])
        users[f"lat-u{u}"] = [int(catalog.ids[i]) for i in rng.sample(list(pool), history)]
    return users


def ranking_items(n: int, users: dict[str, list[int]], others: int = 20_000, seed: int = 0) -> list[ProductEnriched]:
    """The seeded products the ranking stages train on: every clicked one plus ``others``
    (their candidates); the whole 100k catalog would only make training slower."""
    keep = {p for pids in users.values() for p in pids}
    keep |= {synth.FIRST_ID + i for i in random.Random(seed).sample(range(n), min(others, n))}
    return [synth.as_enriched(p) for p in synth.products(n, 0) if p.product_id in keep]


def interactions(users: dict[str, list[int]]) -> list[Interaction]:
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        Interaction(event_id=f"{user}-{i}", user_id=user, product_id=pid, ts=start + timedelta(seconds=i))
        for user, pids in users.items()
        for i, pid in enumerate(pids)
    ]


async def publish_clicks(system: System, events: list[Interaction]) -> None:
    topic = topics.INTERACTIONS.name
    before = system.events_ok(topic)
    async with TailorProducer(system.settings) as producer:
        for i in range(0, len(events), 500):
            await asyncio.gather(*(producer.publish_interaction(e) for e in events[i : i + 500]))
    deadline = time.monotonic() + 300
    while system.events_ok(topic) < before + len(events):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not apply the users' clicks in 300 s")
        await asyncio.sleep(0.2)


class Samples:
    """Per request: client latency (ms from the scheduled time) and the reply's timings."""

    def __init__(self) -> None:
        self.records: list[tuple[float, dict[str, float] | None]] = []
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.strategies: defaultdict[str, int] = defaultdict(int)

    def add(self, due: float, reply: RecommendReply | None, error: str | None = None) -> None:
        self.records.append(((time.perf_counter() - due) * 1000, dict(reply.timings_ms) if reply else None))
        if reply is not None:
            self.strategies[reply.strategy] += 1
            error = error or reply.error
        if error:
            self.errors[error[:60]] += 1

    @property
    def latency(self) -> list[float]:
        return [lat for lat, _ in self.records]

    @property
    def timings(self) -> list[dict[str, float]]:
        return [t for _, t in self.records if t is not None]

    def kafka_round_trip(self) -> list[float]:
        """Client latency minus the worker's own ``total_ms``, per answered request."""
        return [lat - t["total_ms"] for lat, t in self.records if t and "total_ms" in t]


async def through_kafka(system: System, user_ids: list[str], rate: float, seconds: float, k: int) -> Samples:
    out = Samples()
    rng = random.Random(1)
    async with RecommendClient(system.settings, timeout_s=10) as client:

        async def fire(_i: int, due: float) -> None:
            try:
                reply = await client.recommend(rng.choice(user_ids), k=k)
            except TimeoutError:
                out.add(due, None, "timeout")
                return
            out.add(due, reply)

        await open_loop(rate, seconds, fire)
    return out


async def in_process(system: System, users: dict[str, list[int]], rate: float, seconds: float, k: int) -> Samples:
    """The worker's request path in this process: the same Recommender, no Kafka."""
    recommender = system.build_services().recommender
    freeze_startup_heap()  # as the worker does once its models are loaded
    sequences = {}
    for e in interactions(users):
        sequences.setdefault(e.user_id, UserSequence()).add(e, system.settings.sequence_length)
    user_ids = sorted(users)
    rng = random.Random(2)
    out = Samples()

    async def fire(_i: int, due: float) -> None:
        user = rng.choice(user_ids)
        out.add(due, await recommender.answer(RecommendRequest(user_id=user, k=k), sequences[user]))

    await open_loop(rate, seconds, fire)
    return out


async def bare_search(system: System, catalog: Catalog, rate: float, seconds: float) -> list[float]:
    store = system.store()
    rng = np.random.default_rng(3)
    latency: list[float] = []

    async def fire(_i: int, due: float) -> None:
        vector = catalog.vectors[rng.integers(len(catalog.vectors))]
        await asyncio.to_thread(store.search, vector, system.settings.candidates)
        latency.append((time.perf_counter() - due) * 1000)

    await open_loop(rate, seconds, fire)
    store.close()
    return latency


def stage_rows(label: str, samples: Samples) -> list[dict[str, Any]]:
    """One row per ``*_ms`` key the replies carry, whatever the worker names its stages."""
    keys = sorted({key for t in samples.timings for key in t if key.endswith("_ms")}, key=lambda k: k == "total_ms")
    return [
        {"path": label, "stage": key.removesuffix("_ms"), **stats([t[key] for t in samples.timings if key in t])}
        for key in keys
    ]


def drain(system: System, timeout_s: float = 120.0) -> None:
    """Wait until the worker has stopped answering (requests whose clients timed out are
    still answered): its request counter unchanged for 2 s."""
    deadline = time.monotonic() + timeout_s
    last, still = -1.0, 0
    while still < 4 and time.monotonic() < deadline:
        now = system.metric("tailor_request_seconds_count")
        still = still + 1 if now == last else 0
        last = now
        time.sleep(0.5)


def row(path: str, rate: float, seconds: float, samples: Samples) -> dict[str, Any]:
    answered = sum(1 for _, t in samples.records if t is not None)
    return {
        "path": path,
        "rate": rate,
        **stats(samples.latency),
        "served_per_s": answered / seconds,
        "errors": sum(samples.errors.values()),
        "strategies": ", ".join(f"{k}={v}" for k, v in sorted(samples.strategies.items())),
    }


def tag(label: str) -> str:
    """A row label's suffix for a worker-settings variant (none for the default)."""
    return "" if label == "default" else f" [{label}]"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``label:VAR=value,VAR2=value`` -> (label, worker environment)."""
    label, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
    if not label or not env or not all(k.startswith("TAILOR_") for k in env):
        raise argparse.ArgumentTypeError(f"--variant wants label:TAILOR_VAR=value[,...], got {text!r}")
    return label, env


def measure_kafka(
    system: System, user_ids: list[str], plan: list[tuple[float, float]], k: int, warmup: float, label: str
) -> tuple[dict[float, Samples], list[dict[str, Any]]]:
    """The plan's rates through Kafka against the running worker: samples per rate and the
    cores each process used meanwhile."""
    samples: dict[float, Samples] = {}
    cpu: list[dict[str, Any]] = []
    if warmup:
        asyncio.run(through_kafka(system, user_ids, plan[0][0], warmup, k))
    for i, (rate, seconds) in enumerate(plan):
        if i:
            drain(system)
        console.print(f"measuring {rate:g} req/s for {seconds:g}s through Kafka ({label}) ...")
        before, roles, t0 = system.cpu_seconds(), system.thread_cpu_seconds(), time.perf_counter()
        samples[rate] = asyncio.run(through_kafka(system, user_ids, rate, seconds, k))
        wall = time.perf_counter() - t0
        used = cores(before, system.cpu_seconds(), wall)
        split = cores(roles, system.thread_cpu_seconds(), wall)
        answered = len(samples[rate].timings)
        cpu.append(
            {
                "worker settings": label,
                "rate": rate,
                **used,
                "all": sum(used.values()),
                **{f"worker: {role}": c for role, c in split.items()},
                "worker CPU ms per answer": used["worker"] * wall * 1000 / answered if answered else None,
            }
        )
    return samples, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--history", type=int, default=20, help="clicks per user")
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds at --rate")
    ap.add_argument("--sweep", default="10,25", help="lower rates measured first (comma list; '' for none)")
    ap.add_argument("--sweep-seconds", type=float, default=20.0)
    ap.add_argument("--baseline-seconds", type=float, default=20.0, help="seconds of each baseline, per rate")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds at the first rate before measuring")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--models", type=Path, help="model dir (LATEST); default TAILOR_MODEL_DIR or train on sample")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir (logs)")
    ap.add_argument(
        "--stages",
        choices=("trained", "none"),
        default="trained",
        help="trained: user tower, DeepFM and self-attention reranker trained on the bench's users first "
        "(the full request path); none: the item tower only (multi-interest queries + MMR)",
    )
    ap.add_argument("--stage-epochs", type=int, default=1, help="epochs of each ranking stage (cost, not quality)")
    ap.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="label:TAILOR_VAR=value[,...]: also measure the worker (and the client) with these settings, "
        "same catalog, users and baselines (repeatable)",
    )
    ap.add_argument(
        "--replicas",
        type=int,
        action="append",
        default=[],
        choices=range(2, topics.USER_PARTITIONS + 1),
        metavar="N",
        help=f"also measure N worker processes in one group, 2..{topics.USER_PARTITIONS} (the request partitions; "
        "repeatable)",
    )
    args = ap.parse_args()
    plan = [(float(r), args.sweep_seconds) for r in args.sweep.split(",") if r.strip()] + [(args.rate, args.seconds)]
    models = ensure_model(args.models)
    # (label, worker environment, worker processes)
    variants = [("default", {}, 1), *((label, env, 1) for label, env in args.variant)]
    variants += [(f"{n} workers", {}, n) for n in args.replicas]
    worker: dict[str, dict[float, Samples]] = {}  # per worker-settings variant, per rate
    local: dict[float, Samples] = {}
    cpu: list[dict[str, Any]] = []  # cores per process during each rate through Kafka
    with running(models, keep=args.keep) as system:
        catalog = system.seed_catalog(args.items)
        console.print(f"seeded {len(catalog.ids):,} items directly into Milvus in {catalog.seconds:.0f}s")
        users = make_users(catalog, args.users, args.history)
        if args.stages == "trained":
            t0 = time.perf_counter()
            system.train_ranking_stages(ranking_items(args.items, users), interactions(users), args.stage_epochs)
            console.print(f"ranking stages trained in {time.perf_counter() - t0:.0f}s")
        startup = system.start_worker()
        console.print(f"worker ready in {startup:.1f}s")
        t0 = time.perf_counter()
        asyncio.run(publish_clicks(system, interactions(users)))
        console.print(f"{args.users * args.history:,} clicks applied in {time.perf_counter() - t0:.1f}s")
        user_ids = sorted(users)
        for i, (label, env, processes) in enumerate(variants):
            if i:  # the next settings: a fresh worker (it restores the table from its changelog)
                drain(system, timeout_s=600)  # the last rate's backlog: not left to the next worker
                system.stop_worker()
                system.env = dict(env)
                console.print(f"worker ({label}) ready in {system.start_worker():.1f}s")
            if processes > 1:
                # The replicas join an idle worker: joined while it still worked off a backlog,
                # a replica was seen waiting 300 s for partitions on noida-db (never assigned).
                drain(system, timeout_s=600)
                t0 = time.perf_counter()
                system.spawn_replicas(processes - 1)
                asyncio.run(system.wait_all_ready())
                console.print(f"{processes - 1} more worker(s) answering in {time.perf_counter() - t0:.1f}s")
            worker[label], used = measure_kafka(system, user_ids, plan, args.k, args.warmup, label)
            cpu.extend(used)
        system.stop_worker()  # the baselines run with the worker gone: nothing else of ours on the CPU
        for rate, _ in plan:
            console.print(f"baseline in process: {rate:g} req/s for {args.baseline_seconds:g}s ...")
            local[rate] = asyncio.run(in_process(system, users, rate, args.baseline_seconds, args.k))
        bare = asyncio.run(bare_search(system, catalog, args.rate, args.baseline_seconds))

    rows = []
    for rate, seconds in plan:
        base = row("baseline: Recommender.answer in process (no Kafka)", rate, args.baseline_seconds, local[rate])
        for label, *_ in variants:
            rows.append(row(f"worker via Kafka (RecommendClient){tag(label)}", rate, seconds, worker[label][rate]))
            ratios(rows[-1:], base)
        rows.append(base)
    bare_row = {"path": f"baseline: bare Milvus top-{system.settings.candidates} search", "rate": args.rate}
    bare_row |= {**stats(bare), "served_per_s": len(bare) / args.baseline_seconds, "errors": 0}
    ratios([bare_row], rows[-1])
    rows.append(bare_row)
    for r in rows:
        r["goal_p99<=100ms"] = "yes" if r.get("p99_ms", 1e9) <= GOAL_MS else "NO"
    title = (
        f"Request-reply latency: {len(catalog.ids):,} items, {args.users} users x {args.history} clicks, "
        f"open loop at each rate ({args.rate:g} req/s for {args.seconds:g}s, lower rates {args.sweep_seconds:g}s, "
        f"baselines {args.baseline_seconds:g}s), k={args.k}; timeouts after 10 s count as 10 s; "
        "x_ = ratio to the in-process request path at the same rate"
    )
    emit("latency", title, rows)
    stages = []
    for variant, *_ in variants:
        for rate, _ in plan:
            label, samples = f"worker via Kafka @{rate:g}/s{tag(variant)}", worker[variant][rate]
            stages += stage_rows(label, samples)
            trip = samples.kafka_round_trip()
            stages.append({"path": label, "stage": "kafka round trip (client - total)", **stats(trip)})
            stages.append({"path": label, "stage": "client (end to end)", **stats(samples.latency)})
    for rate, _ in plan:
        stages += stage_rows(f"in process (no Kafka) @{rate:g}/s", local[rate])
    emit("latency_stages", "Latency by stage (timings_ms of the replies; ms)", stages)
    machine = os.cpu_count() or 0
    emit("latency_cpu", f"Cores used by each process while serving through Kafka (this machine: {machine})", cpu)
    series: dict[str, list[float]] = {}
    for rate, _ in plan:
        for label, *_ in variants:
            series[f"worker via Kafka @{rate:g}/s{tag(label)}"] = worker[label][rate].latency
        series[f"in process @{rate:g}/s"] = local[rate].latency
    series[f"bare Milvus search @{args.rate:g}/s"] = bare
    plot_latency("latency", title, series, GOAL_MS)
    for rate, _ in plan:
        for label, *_ in variants:
            if worker[label][rate].errors:
                console.print(f"[yellow]@{rate:g}/s{tag(label)} errors: worker {dict(worker[label][rate].errors)}")
        if local[rate].errors:
            console.print(f"[yellow]@{rate:g}/s errors: in process {dict(local[rate].errors)}")


if __name__ == "__main__":
    main()
