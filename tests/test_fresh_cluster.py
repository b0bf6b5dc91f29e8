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
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumers.kafka import client_kwargs
from schemas import topics
from schemas.settings import Settings
from streams.runtime import GROUP_TOPICS, broker_process, ensure_topics, free_port
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


async def _overrides(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's own config overrides (source 1), by name."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _, _, _, name, entries in response.resources:
            out[name] = {e[0]: e[1] for e in entries if e[3] == 1}
    return out


@pytest.mark.integration
async def test_changelogs_are_compacted_and_replies_expire_also_on_existing_topics(tmp_path: Path) -> None:
    """The changelog of a table must keep every key's last value (compacted; created with
    the broker's default policy, Apache Kafka deletes a week-old user's sequence); replies
    expire after ``reply_retention_s``. Topics made before (without them) get them, and
    keep the overrides they had."""
    port = free_port()
    broker = broker_process(tmp_path, port)
    broker.start()
    try:
        broker.wait_port(port, 60)
        settings = Settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", reply_retention_s=45)
        changelog = topics.changelog_topic(settings.app_id).name
        admin = AIOKafkaAdminClient(**client_kwargs(settings))
        await admin.start()
        try:  # an older Tailor's topics: no compaction, no retention, one override of the user's own
            await admin.create_topics(
                [
                    NewTopic(changelog, topics.USER_PARTITIONS, 1, topic_configs={"max.message.bytes": "2000000"}),
                    NewTopic(topics.RECOMMEND_REPLIES.name, topics.RECOMMEND_REPLIES.partitions, 1),
                ]
            )
            await ensure_topics(settings)
            await ensure_topics(settings)  # idempotent
            product_changelog = topics.changelog_topic(settings.app_id, topics.PRODUCT_VERSION_TABLE).name
            got = await _overrides(admin, [changelog, product_changelog, topics.RECOMMEND_REPLIES.name])
        finally:
            await admin.close()
    finally:
        broker.stop()
    assert got[changelog] == {"max.message.bytes": "2000000", "cleanup.policy": "compact"}
    assert got[product_changelog]["cleanup.policy"] == "compact"  # created by ensure_topics
    assert got[topics.RECOMMEND_REPLIES.name]["retention.ms"] == "45000"
