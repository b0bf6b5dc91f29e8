"""The faust app: broker settings, topics (raw bytes: decoding and dead-lettering are
ours) and the changelog-backed user-sequence table."""

from __future__ import annotations

from typing import Any

import aiokafka
import faust

from consumers.kafka import client_kwargs
from schemas import topics
from schemas.settings import Settings, load_settings


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    kwargs = client_kwargs(settings)
    # The same source as the aiokafka clients (client_kwargs): SASL under SASL_* only.
    if kwargs["security_protocol"].startswith("SASL_"):
        return faust.SASLCredentials(
            username=kwargs.get("sasl_plain_username"),
            password=kwargs.get("sasl_plain_password"),
            ssl_context=kwargs.get("ssl_context"),
            mechanism=kwargs["sasl_mechanism"],
        )
    if "ssl_context" in kwargs:
        return faust.SSLCredentials(kwargs["ssl_context"])
    return None


def _seek_to_committed_zero_too() -> None:
    """aiokafka 0.14's ``seek_to_committed`` skips a partition whose committed offset is 0
    (``if offset and offset > 0``). faust calls it after every rebalance to re-read what it
    fetched while recovering and dropped; on a partition still at offset 0 those records
    were skipped for good (products lost after a broker restart; tests/test_failures.py).
    ``ensure_topics`` commits the log start where a partition has no offset yet, so each
    input partition has one for this to seek to."""
    original = aiokafka.AIOKafkaConsumer.seek_to_committed
    if getattr(original, "tailor_patched", False):
        return

    async def seek_to_committed(self: aiokafka.AIOKafkaConsumer, *partitions: Any) -> dict[Any, int | None]:
        committed = await original(self, *partitions)
        for tp, offset in committed.items():
            if offset == 0:
                self._fetcher.seek_to(tp, 0)  # noqa: SLF001 - what the original does for offset > 0
        return committed

    seek_to_committed.tailor_patched = True  # type: ignore[attr-defined]
    aiokafka.AIOKafkaConsumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]


_seek_to_committed_zero_too()


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=_credentials(settings),
        store="memory://",  # the changelog topic is the durable copy; recovery replays it
        topic_partitions=topics.USER_PARTITIONS,
        topic_replication_factor=1,
        stream_wait_empty=False,  # else shutdown waits for buffers that never drain
        reply_create_topic=True,
        broker_session_timeout=30,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
    )


settings = load_settings()
app = create_app(settings)


def raw_topic(spec: topics.TopicSpec) -> Any:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )


products_created = raw_topic(topics.PRODUCTS_CREATED)
products_enriched = raw_topic(topics.PRODUCTS_ENRICHED)
products_reenrich = raw_topic(topics.PRODUCTS_REENRICH)
interactions = raw_topic(topics.INTERACTIONS)
recommend_requests = raw_topic(topics.RECOMMEND_REQUESTS)
recommend_replies = raw_topic(topics.RECOMMEND_REPLIES)
deadletter = raw_topic(topics.DEADLETTER)

# user_id -> UserSequence (as a dict). Changelog-backed, so it survives a worker restart;
# faust writes keys and values as JSON in the changelog.
# (No key_type/value_type: with value_type=dict faust's changelog recovery fails on
# ``dict.from_data``; untyped tables round-trip plain JSON.)
sequences = app.Table(topics.USER_SEQUENCE_TABLE, default=None, partitions=topics.USER_PARTITIONS)
# str(product_id) -> ISO event_time of the newest ProductCreated handled. Co-partitioned
# with products.created and products.reenrich (same key, same partition count).
product_versions = app.Table(topics.PRODUCT_VERSION_TABLE, default=None, partitions=topics.PRODUCTS_CREATED.partitions)
