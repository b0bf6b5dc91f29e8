"""Events on the wire. Every event carries event_id, event_time and schema_version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.attributes import FlatAttributes, ProductAttributes
from schemas.limits import (
    MAX_CONTEXT_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_PRICE,
    MAX_TITLE_CHARS,
)

SCHEMA_VERSION = 1
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, strip_whitespace=True)]
ProductId = Annotated[int, Field(ge=0, lt=2**63)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)]
ContextText = Annotated[str, StringConstraints(max_length=MAX_CONTEXT_CHARS)]
Price = Annotated[float, Field(ge=0, le=MAX_PRICE)]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    # Unknown fields are ignored so older workers accept newer producers' events.
    model_config = ConfigDict(extra="ignore")

    event_id: Id = Field(default_factory=_new_id)
    event_time: datetime = Field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION


class ProductCreated(Event):
    product_id: ProductId
    title: Title
    description: Description = ""
    attributes: ProductAttributes
    price: Price | None = None
    created_at: datetime = Field(default_factory=_now)


class ProductEnriched(Event):
    product_id: ProductId
    title: Title
    description: Description = ""
    std: FlatAttributes
    re: FlatAttributes
    coarse: str
    fine: str
    gender: str = "unisex"
    price: Price | None = None
    enricher: str  # the backend that produced `re` ("source" when the event already had RE)
    enrichment_notes: list[str] = Field(default_factory=list)  # fallbacks and their reasons
    new_re_terms: list[str] = Field(default_factory=list)  # RE vocabulary growth it caused
    # True when `re` came from the fallback because the LLM failed: an LLM-enriched
    # ProductEnriched for the same product follows once the LLM answers.
    reenrich_pending: bool = False
    model_version: str = ""
    created_at: datetime = Field(default_factory=_now)


class ReenrichRequest(Event):
    """A product embedded from the fallback enricher, to enrich again with the primary
    (LLM) once it answers. Kept on a topic, so a pending retry survives restarts."""

    product: ProductCreated
    attempt: Annotated[int, Field(ge=1, le=1000)] = 1
    not_before: datetime = Field(default_factory=_now)
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class Interaction(Event):
    user_id: Id
    product_id: ProductId
    kind: Literal["click", "cart", "purchase"] = "click"
    ts: datetime = Field(default_factory=_now)


class Profile(BaseModel):
    height_cm: Annotated[float, Field(ge=50, le=250)] | None = None
    weight_kg: Annotated[float, Field(ge=20, le=300)] | None = None
    age: Annotated[float, Field(ge=10, le=120)] | None = None


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    coarse: Annotated[str, StringConstraints(max_length=64)] | None = None
    fine: Annotated[str, StringConstraints(max_length=64)] | None = None
    gender: Annotated[str, StringConstraints(max_length=16)] | None = None
    price_min: Price | None = None
    price_max: Price | None = None


class RecommendRequest(Event):
    request_id: Id = Field(default_factory=_new_id)
    user_id: Id
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    context: ContextText | None = None
    profile: Profile | None = None
    filters: Filters | None = None
    exclude_seen: bool = True
    # MMR trade-off: 1.0 = pure relevance, lower = more diverse lists.
    diversity_lambda: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    # Of the top-k, up to this many slots for new items (no interactions yet), ranked by
    # content; None = the model's default (``models.ranking.EXPLORE_SLOTS``), 0 = none.
    explore_slots: Annotated[int, Field(ge=0, le=MAX_K)] | None = None


class RecommendedItem(BaseModel):
    product_id: ProductId
    score: float
    reason: str
    title: str = ""
    fine: str = ""


class RecommendReply(Event):
    request_id: Id
    user_id: Id
    items: list[RecommendedItem] = Field(default_factory=list)
    strategy: Literal["sequence", "context", "popular", "none", "error"] = "none"
    model_version: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class DeadLetter(Event):
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    error: str  # short reason class, e.g. "invalid_json", "schema", "too_large"
    detail: str  # human-readable explanation (validation errors, ...)
    payload_b64: str  # the original bytes, base64, so nothing is lost


class ModelsUpdated(Event):
    """Published by ``tailor retrain`` once a new model version is complete on disk:
    every worker loads it and swaps without dropping a request."""

    model_version: Id
    item_space: Id  # the version whose item tower made the vectors (= the Milvus collection)
    item_tower_changed: bool
    components: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
