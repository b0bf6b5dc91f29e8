"""Every Kafka topic Tailor uses, in one place, with its partition count and key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TopicSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    partitions: int
    key: str  # which entity id is the message key (ordering holds per key)
    # Topic configs the topic is created with (and that ``tailor topics`` / the worker set
    # on an existing topic that lacks them). Empty: the broker's defaults.
    configs: dict[str, str] = {}


# Interactions, requests and the user-sequence changelog must share one partition
# count: faust co-partitions the table with the streams that read it (user_id key).
USER_PARTITIONS = 4

PRODUCTS_CREATED = TopicSpec(name="tailor.products.created", partitions=4, key="product_id")
# Retries of LLM enrichment after an outage; same key and partitions as products.created,
# so the product-versions table is co-partitioned with both.
PRODUCTS_REENRICH = TopicSpec(name="tailor.products.reenrich", partitions=4, key="product_id")
PRODUCTS_ENRICHED = TopicSpec(name="tailor.products.enriched", partitions=4, key="product_id")
INTERACTIONS = TopicSpec(name="tailor.interactions", partitions=USER_PARTITIONS, key="user_id")
# Requests are keyed by user_id (not request_id) so a request lands on the partition
# that holds that user's sequence-table shard; replies are keyed by request_id.
RECOMMEND_REQUESTS = TopicSpec(name="tailor.recommend.requests", partitions=USER_PARTITIONS, key="user_id")
RECOMMEND_REPLIES = TopicSpec(name="tailor.recommend.replies", partitions=4, key="request_id")
DEADLETTER = TopicSpec(name="tailor.deadletter", partitions=1, key="source_topic")
MODELS_UPDATED = TopicSpec(name="tailor.models.updated", partitions=1, key="model_version")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    PRODUCTS_CREATED,
    PRODUCTS_REENRICH,
    PRODUCTS_ENRICHED,
    INTERACTIONS,
    RECOMMEND_REQUESTS,
    RECOMMEND_REPLIES,
    DEADLETTER,
    MODELS_UPDATED,
)

# faust names the changelog of table T in app A "<A>-<T>-changelog"; it is created by
# faust itself, but we create it up front so its partition count is right on brokers
# that auto-create topics with one partition.
USER_SEQUENCE_TABLE = "user-sequences"
# product_id -> event_time of the latest ProductCreated handled: a late LLM re-enrichment
# must not overwrite a newer version of the product.
PRODUCT_VERSION_TABLE = "product-versions"


# A table changelog keeps the last value per key, forever: compacted, as faust creates its
# own. Created with the broker's default policy (delete after 7 days on Apache Kafka), a
# user inactive for a week would lose their sequence at the next recovery.
CHANGELOG_CONFIGS = {"cleanup.policy": "compact"}


def changelog_topic(app_id: str, table: str = USER_SEQUENCE_TABLE) -> TopicSpec:
    if table == PRODUCT_VERSION_TABLE:
        return TopicSpec(
            name=f"{app_id}-{table}-changelog",
            partitions=PRODUCTS_CREATED.partitions,
            key="product_id",
            configs=CHANGELOG_CONFIGS,
        )
    return TopicSpec(
        name=f"{app_id}-{table}-changelog", partitions=USER_PARTITIONS, key="user_id", configs=CHANGELOG_CONFIGS
    )


def replies_topic(retention_s: int) -> TopicSpec:
    """The replies topic with its retention (``Settings.reply_retention_s``)."""
    return RECOMMEND_REPLIES.model_copy(update={"configs": {"retention.ms": str(retention_s * 1000)}})
