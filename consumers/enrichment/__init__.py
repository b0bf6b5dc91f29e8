"""Feature enrichment: raw product -> RE attributes, behind one ``Enricher`` interface."""

from __future__ import annotations

from consumers.enrichment.base import Enricher, Enrichment, EnrichmentError
from consumers.enrichment.cache import EnrichmentCache
from consumers.enrichment.fallback import FallbackEnricher
from consumers.enrichment.openai_compat import OpenAICompatEnricher, OpenAIConfig
from consumers.enrichment.rules import RulesEnricher
from schemas.settings import Settings

__all__ = [
    "Enricher",
    "Enrichment",
    "EnrichmentError",
    "FallbackEnricher",
    "OpenAICompatEnricher",
    "RulesEnricher",
    "make_enricher",
]


def make_enricher(name: str, settings: Settings | None = None) -> Enricher:
    """The backend ``TAILOR_ENRICHER`` names. ``openai`` answers from the cache first and
    falls back to ``rules`` when the endpoint fails, so it never blocks the product path."""
    if name == "rules":
        return RulesEnricher()
    if name == "openai":
        settings = settings or Settings()
        primary = OpenAICompatEnricher(OpenAIConfig.from_settings(settings))
        return FallbackEnricher(primary, RulesEnricher(), EnrichmentCache(settings.enrich_cache))
    # The local transformers backend plugs in here.
    raise ValueError(f"enricher {name!r} is not available yet; use TAILOR_ENRICHER=rules or openai")
