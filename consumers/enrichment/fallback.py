"""A primary (LLM) enricher behind a persisted cache, with a deterministic fallback: the
product path always gets RE attributes at once, whatever state the LLM is in."""

from __future__ import annotations

import logging
import sqlite3

from consumers.enrichment.base import Enricher, Enrichment, EnrichmentError
from consumers.enrichment.cache import EnrichmentCache, content_key
from consumers.enrichment.rules import RulesEnricher
from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated

log = logging.getLogger("tailor.enrichment")


class FallbackEnricher:
    def __init__(
        self, primary: Enricher, fallback: Enricher | None = None, cache: EnrichmentCache | None = None
    ) -> None:
        self.primary = primary
        self.fallback = fallback or RulesEnricher()
        self.cache = cache
        self.name = primary.name
        # The primary's model and prompt version belong in the key (see OpenAICompatEnricher).
        self.scope: str = getattr(primary, "cache_scope", primary.name)

    async def enrich(self, product: ProductCreated) -> Enrichment:
        key = content_key(self.scope, product)
        cached = await self._recall(key)
        if cached is not None:
            return Enrichment(re=cached, backend=self.primary.name, notes=["cache"])
        try:
            found = await self.primary.enrich(product)
        except EnrichmentError as exc:
            return await self._fall_back(product, exc.reason)
        await self._remember(key, found)
        return found

    async def _fall_back(self, product: ProductCreated, reason: str) -> Enrichment:
        # Not cached: a replay after the outage asks the primary again.
        log.warning("enricher %s failed on product %s: %s", self.primary.name, product.product_id, reason)
        found = await self.fallback.enrich(product)
        note = f"{self.primary.name} failed: {reason}; {self.fallback.name} used"
        return found.model_copy(update={"notes": [*found.notes, note], "primary_failed": reason})

    async def enrich_primary(self, product: ProductCreated) -> Enrichment:
        """The primary's answer (cache first) or ``EnrichmentError``: no fallback. Used to
        enrich again, later, a product that was embedded from the fallback."""
        key = content_key(self.scope, product)
        cached = await self._recall(key)
        if cached is not None:
            return Enrichment(re=cached, backend=self.primary.name, notes=["cache"])
        found = await self.primary.enrich(product)
        await self._remember(key, found)
        return found

    async def _recall(self, key: str) -> FlatAttributes | None:
        if self.cache is None:
            return None
        try:
            return await self.cache.get(key)
        except sqlite3.Error as exc:  # an unreadable cache is a miss, not a lost product
            log.warning("enrichment cache read failed (%s): %s", self.cache.path, exc)
            return None

    async def _remember(self, key: str, found: Enrichment) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.put(key, found.re, found.backend)
        except sqlite3.Error as exc:  # the answer is still good; only the replay saving is lost
            log.warning("enrichment cache write failed (%s): %s", self.cache.path, exc)

    async def aclose(self) -> None:
        close = getattr(self.primary, "aclose", None)
        if close is not None:
            await close()
        if self.cache is not None:
            self.cache.close()
