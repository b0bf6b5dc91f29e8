"""Feature enrichment: raw product -> RE attributes, behind one ``Enricher`` interface."""

from consumers.enrichment.base import Enricher, Enrichment
from consumers.enrichment.rules import RulesEnricher

__all__ = ["Enricher", "Enrichment", "RulesEnricher", "make_enricher"]


def make_enricher(name: str) -> Enricher:
    if name == "rules":
        return RulesEnricher()
    # The LLM backends (openai-compatible, local transformers) plug in here.
    raise ValueError(f"enricher {name!r} is not available yet; use TAILOR_ENRICHER=rules")
