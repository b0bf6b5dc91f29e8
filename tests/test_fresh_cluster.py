"""A worker started on a fresh cluster, without `tailor topics` first (real broker, Milvus
and worker): it creates the topics with their partition counts and gives its group a
committed offset on every input partition before it reads (``streams.runtime``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.kafka import client_kwargs
from schemas import topics
from streams.runtime import GROUP_TOPICS
from tests.harness import Stack


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        s.start(topics=False)
        yield s
    finally:
        s.stop()


async def _partitions(stack: Stack, timeout_s: float = 90) -> dict[str, int]:
    """Partition count per topic once every topic the worker needs exists."""
    consumer = AIOKafkaConsumer(**client_kwargs(stack.settings), group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            found = {t.name: len(consumer.partitions_for_topic(t.name) or ()) for t in topics.ALL_TOPICS}
            if all(found.values()) or time.monotonic() > deadline:
                return found
            if stack.worker and stack.worker.poll() is not None:
                raise RuntimeError(f"worker exited: {stack.worker_log()[-3000:]}")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def test_a_worker_on_a_fresh_cluster_creates_topics_and_group_offsets(fresh: Stack) -> None:
    found = await _partitions(fresh)
    assert found == {t.name: t.partitions for t in topics.ALL_TOPICS}
    wanted = [TopicPartition(t.name, p) for t in GROUP_TOPICS for p in range(t.partitions)]
    admin = AIOKafkaAdminClient(**client_kwargs(fresh.settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(fresh.settings.app_id, partitions=wanted)
    finally:
        await admin.close()
    # -1 = nothing committed: after a rebalance faust would not seek such a partition back
    assert {tp: meta.offset >= 0 for tp, meta in offsets.items()} == dict.fromkeys(wanted, True)
    await fresh.wait_ready()  # and it serves
