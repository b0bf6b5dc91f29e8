"""The faust app: broker settings, topics (raw bytes: decoding and dead-lettering are
ours) and the changelog-backed user-sequence table."""

from __future__ import annotations

from typing import Any

import aiokafka
import faust

from consumers.kafka import client_kwargs, compression_type
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


def _no_stream_records_before_the_seek() -> None:
    """faust 0.15.3 ends a rebalance (``Recovery.on_recovery_completed``, and
    ``_resume_streams`` without tables) by resuming the stream partitions, *then* awaiting
    ``perform_seek`` (a round trip for the committed offsets), then resuming flow control,
    which empties the agents' queues. With tables, flow is already on at that point (it was
    turned on to read the changelogs), so during the seek the fetcher hands records from the
    new assignment to the agents' queues and moves its read offsets past them; the resume
    then empties those queues, and the same records fetched again from the committed offset
    are dropped as already read (``DROPPED MESSAGE ROFF``). Those products were never
    processed, and faust's commits then went past them (tests/test_failures.py, broker
    restart with products in flight: 1 to 6 products per partition lost in 2 of 5 runs).

    Stop the flow first, as the revocation at the start of the rebalance does: nothing is
    fetched for the streams or handed to an agent until faust resumes the flow itself, after
    the seek."""
    from faust.tables.recovery import Recovery

    for name in ("on_recovery_completed", "_resume_streams"):
        original = getattr(Recovery, name)
        if getattr(original, "tailor_patched", False):
            continue

        def patched(self: Recovery, generation_id: int = 0, *, _original: Any = original) -> Any:
            self.app.consumer.stop_flow()
            self.app.flow_control.suspend()
            return _original(self, generation_id)

        patched.tailor_patched = True  # type: ignore[attr-defined]
        setattr(Recovery, name, patched)


_no_stream_records_before_the_seek()


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
        producer_compression_type=compression_type(settings),
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
