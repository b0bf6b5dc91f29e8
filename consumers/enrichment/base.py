"""The enrichment contract every backend implements."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated


class Enrichment(BaseModel):
    re: FlatAttributes
    backend: str
    notes: list[str] = Field(default_factory=list)
    # Set when an LLM backend failed and a fallback answered: the product is embedded from
    # the fallback now and enriched again by the LLM later (same pk).
    primary_failed: str | None = None


class EnrichmentError(Exception):
    """A backend could not produce a valid answer (timeout, HTTP error, invalid JSON after
    the repair retry...). ``reason`` is short and safe to put on the event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Enricher(Protocol):
    name: str

    async def enrich(self, product: ProductCreated) -> Enrichment:
        """Return RE attributes for a product. Must not raise on odd input."""
        ...
