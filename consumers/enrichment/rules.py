"""Deterministic enricher (embedded default, no network): lexicons over title, description
and STD values fill the RE attributes the seed's LLM would write."""

from __future__ import annotations

import re
from functools import lru_cache

from consumers.enrichment import lexicon as lx
from consumers.enrichment.base import Enrichment
from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated


@lru_cache(maxsize=4096)
def _pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])")


def first_match(text: str, table: list[tuple[str, str]]) -> str | None:
    for phrase, value in table:
        if _pattern(phrase).search(text):
            return value
    return None


def _std_term(std: FlatAttributes, key: str) -> str | None:
    values = std.get(key)
    return f"{key}={values[0].lower()}" if values else None


def _fabric(text: str, std: FlatAttributes) -> str | None:
    fibre = first_match(text, lx.FIBRE)
    if fibre is None and std.get("fiber_composition"):
        fibre = std["fiber_composition"][0].split()[0].capitalize()
    if fibre is None:
        return None
    return f"{fibre}_{first_match(text, lx.WEIGHT) or 'Normal'}"


def rules_re(text: str, std: FlatAttributes, fine: str) -> FlatAttributes:
    """RE attributes from lower-cased free text plus the STD block."""
    out: dict[str, str | None] = {
        "fit.vibe": first_match(text, lx.FIT_VIBE),
        "silhouette.shape": first_match(text, lx.SILHOUETTE)
        or lx.SILHOUETTE_FROM_STD.get(_std_term(std, "pants_silhouette") or "")
        or lx.SILHOUETTE_FROM_STD.get(_std_term(std, "skirt_design") or ""),
        "length.feeling": first_match(text, lx.LENGTH)
        or lx.LENGTH_FROM_STD.get(_std_term(std, "top_length_type") or ""),
        "fabric.feature": _fabric(text, std),
        "season": first_match(text, lx.SEASON) or lx.SEASON_FROM_STD.get((std.get("season") or [""])[0].lower()),
    }
    colour = first_match(text, [(c, c) for c in lx.COLOURS])
    if colour:
        out["color"] = colour.capitalize()
    fabric = out["fabric.feature"]
    # A descriptive category in the seed's style ("wool_coat", "oversized_linen_shirt").
    parts = [(out["fit.vibe"] or "").split("/")[0].lower(), fabric.split("_")[0].lower() if fabric else "", fine]
    out["category"] = "_".join(p.replace("-", "").replace(" ", "") for p in parts if p)
    return {k: [v] for k, v in out.items() if v}


def text_to_std(text: str) -> FlatAttributes:
    """Free text (e.g. a request's context) -> the STD attributes it names."""
    low = text.lower()
    std: FlatAttributes = {}
    fine = first_match(low, lx.FINE_CATEGORY)
    if fine:
        std["category"] = [lx.CATEGORY_CODE[fine]]
    colour = first_match(low, [(c, c) for c in lx.COLOURS])
    if colour:
        std["color"] = [lx.COLOUR_TO_STD.get(colour, colour.capitalize())]
    gender = first_match(low, lx.GENDER)
    if gender:
        std["gender"] = [gender]
    season = first_match(low, lx.SEASON)
    if season:
        std["season"] = [{"Winter": "winter", "Summer": "summer"}.get(season, "spring&fall")]
    return std


class RulesEnricher:
    name = "rules"

    async def enrich(self, product: ProductCreated) -> Enrichment:
        text = f"{product.title}\n{product.description}".lower()
        _, fine = product.attributes.category()
        return Enrichment(re=rules_re(text, product.attributes.std(), fine), backend=self.name)
