"""Click ingest throughput of one worker vs a bare aiokafka consumer of the same topic.

    python -m bench.ingest [--clicks 50000] [--users 5000] [--models DIR]

Starts a real noida-db broker, an embedded Milvus and (later) the real worker on free ports
in a temp dir. ``--clicks`` Interaction events (``--users`` users, random products) are
published to ``tailor.interactions`` with ``TailorProducer`` first, so every consumer then
reads the same backlog as fast as it can:

  * bare aiokafka consumer (no group, all partitions assigned, from the beginning): raw
    records only, then again also decoding each value into ``Interaction`` (pydantic);
  * the worker: ``tailor worker`` started on the backlog; it applies each click to the
    ``user-sequences`` table (decode, key check, read-modify-write of the user's sequence,
    changelog record). Its progress is read from its Prometheus counter
    ``tailor_events_total{topic="tailor.interactions",outcome="ok"}`` every 100 ms; the
    rate is taken between 10% and 90% of the clicks (startup and the tail excluded), and
    the time from its first to its last applied click is shown too.

The bare consumers run before the worker starts (nothing else of ours on the CPU).
Writes bench/results/ingest.csv and ingest.png (the worker's progress over time).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.report import RESULTS, console, emit
from bench.system import System, ensure_model, running
from consumers.kafka import client_kwargs
from consumers.producer import TailorProducer
from schemas import topics
from schemas.events import Interaction

TOPIC = topics.INTERACTIONS.name


def clicks(n: int, users: int, seed: int = 0) -> list[Interaction]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        Interaction(
            event_id=f"ing-{i}",
            user_id=f"ing-u{rng.randrange(users)}",
            product_id=10_000_001 + rng.randrange(100_000),
            kind=rng.choices(("click", "cart", "purchase"), (90, 8, 2))[0],
            ts=start + timedelta(milliseconds=i),
        )
        for i in range(n)
    ]


async def publish(system: System, events: list[Interaction]) -> float:
    t0 = time.perf_counter()
    async with TailorProducer(system.settings) as producer:
        for i in range(0, len(events), 1000):
            await asyncio.gather(*(producer.publish_interaction(e) for e in events[i : i + 1000]))
    return time.perf_counter() - t0


async def bare_consumer(system: System, expected: int, decode: bool) -> float:
    """Seconds for a bare aiokafka consumer to read ``expected`` records of the topic."""
    consumer = AIOKafkaConsumer(**client_kwargs(system.settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(TOPIC, p) for p in range(topics.INTERACTIONS.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        t0 = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                if decode:
                    for rec in records:
                        Interaction.model_validate_json(rec.value or b"")
                seen += len(records)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


def watch_worker(system: System, expected: int, timeout_s: float) -> list[tuple[float, float]]:
    """Start the worker on the backlog; (time, clicks applied) samples until all are."""
    samples: list[tuple[float, float]] = []
    system.spawn_worker()
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter()
        if system.worker and system.worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {system.log_path}")
        try:
            count = system.events_ok(TOPIC)
        except OSError:  # the metrics endpoint is not up yet
            count = 0.0
        samples.append((now - t0, count))
        if count >= expected:
            return samples
        if now - t0 > timeout_s:
            raise TimeoutError(f"worker applied {count:.0f} of {expected} clicks in {timeout_s}s")
        time.sleep(0.1)


def crossing(samples: list[tuple[float, float]], level: float) -> float:
    """Time the counter reached ``level`` (linear between samples)."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if c0 < level <= c1:
            return t0 + (t1 - t0) * (level - c0) / (c1 - c0)
    return samples[-1][0]


def plot(samples: list[tuple[float, float]], rows: list[dict[str, Any]], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(samples)
    fig, (ax_prog, ax_bar) = plt.subplots(1, 2, figsize=(13, 4.8))
    ax_prog.plot(arr[:, 0], arr[:, 1])
    ax_prog.set_xlabel("seconds since the worker process started")
    ax_prog.set_ylabel("clicks applied (worker metric)")
    ax_prog.grid(True, alpha=0.3)
    labels = [r["consumer"] for r in rows]
    ax_bar.barh(labels, [r["events_per_s"] for r in rows])
    ax_bar.set_xlabel("events / s")
    ax_bar.set_xscale("log")
    ax_bar.grid(True, axis="x", which="both", alpha=0.3)
    ax_bar.tick_params(axis="y", labelsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 160)), fontsize=9)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ingest.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"[dim]wrote {path}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds the worker may take")
    ap.add_argument("--models", type=Path, help="model dir (LATEST); default TAILOR_MODEL_DIR or train on sample")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir (logs)")
    args = ap.parse_args()
    models = ensure_model(args.models)
    events = clicks(args.clicks, args.users)
    with running(models, keep=args.keep) as system:
        produce_s = asyncio.run(publish(system, events))
        console.print(f"published {len(events):,} clicks in {produce_s:.1f}s")
        raw_s = asyncio.run(bare_consumer(system, len(events), decode=False))
        decode_s = asyncio.run(bare_consumer(system, len(events), decode=True))
        console.print(f"bare consumer: {raw_s:.2f}s raw, {decode_s:.2f}s with decoding; starting the worker ...")
        samples = watch_worker(system, len(events), args.timeout)
    n = len(events)
    t10, t90 = crossing(samples, 0.1 * n), crossing(samples, 0.9 * n)
    first = next(t for t, c in samples if c > 0)
    worker_rate = 0.8 * n / (t90 - t10)
    rows: list[dict[str, Any]] = [
        {
            "consumer": "bare aiokafka consumer: read records",
            "events": n,
            "seconds": raw_s,
            "events_per_s": n / raw_s,
        },
        {
            "consumer": "bare aiokafka consumer: read + decode Interaction",
            "events": n,
            "seconds": decode_s,
            "events_per_s": n / decode_s,
        },
        {
            "consumer": "worker: applied to the user-sequences table (10%-90%)",
            "events": n,
            "seconds": t90 - t10,
            "events_per_s": worker_rate,
            "first_to_last_s": samples[-1][0] - first,
        },
        {
            "consumer": "producer: TailorProducer publish (acks=all)",
            "events": n,
            "seconds": produce_s,
            "events_per_s": n / produce_s,
        },
    ]
    for row in rows:
        row["x_vs_bare_read"] = row["events_per_s"] / rows[0]["events_per_s"]
        row["x_vs_bare_decode"] = row["events_per_s"] / rows[1]["events_per_s"]
    title = (
        f"Click ingest: {n:,} clicks of {args.users:,} users, read from a backlog on "
        f"{topics.INTERACTIONS.partitions} partitions; one worker vs a bare aiokafka consumer, same run"
    )
    emit("ingest", title, rows)
    plot(samples, rows, title)


if __name__ == "__main__":
    main()
