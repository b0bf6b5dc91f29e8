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


class Enricher(Protocol):
    name: str

    async def enrich(self, product: ProductCreated) -> Enrichment:
        """Return RE attributes for a product. Must not raise on odd input."""
        ...
