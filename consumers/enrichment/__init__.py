"""Feature enrichment: raw product -> RE attributes, behind one ``Enricher`` interface."""

from __future__ import annotations

from consumers.enrichment.base import Enricher, Enrichment, EnrichmentError
from consumers.enrichment.cache import EnrichmentCache
from consumers.enrichment.fallback import FallbackEnricher
from consumers.enrichment.local_llm import TransformersConfig, TransformersEnricher
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
    "TransformersEnricher",
    "make_enricher",
]


def make_enricher(name: str, settings: Settings | None = None) -> Enricher:
    """The backend ``TAILOR_ENRICHER`` names. The LLM backends (``openai``, ``transformers``)
    answer from the cache first and fall back to ``rules`` when the model fails, so they never
    block the product path."""
    settings = settings or Settings()
    rules = RulesEnricher(zero_shot=settings.rules_zero_shot)
    if name == "rules":
        return rules
    if name == "openai":
        primary = OpenAICompatEnricher(OpenAIConfig.from_settings(settings))
        return FallbackEnricher(primary, rules, EnrichmentCache(settings.enrich_cache))
    if name == "transformers":
        local = TransformersEnricher(TransformersConfig.from_settings(settings))
        return FallbackEnricher(local, rules, EnrichmentCache(settings.enrich_cache))
    raise ValueError(f"enricher {name!r} is not available; use TAILOR_ENRICHER=rules, openai or transformers")
