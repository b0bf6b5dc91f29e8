"""Deterministic enricher (embedded default, no network): fills the RE attributes the seed's
LLM would write from, in order of precedence,
  1. lexicons over title and description (an explicit word beats everything else),
  2. measurement-ratio rules over the garment's STD measurements (``geometry``),
  3. STD value mappings (season, fibre, transparency -> fabric weight, ...),
  4. MiniLM zero-shot matching of the text against the seed's RE vocabulary, for the keys the
     first three left empty (``zero_shot``; switchable, it costs ~10-30 ms per text).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from functools import lru_cache

from consumers.enrichment import lexicon as lx
from consumers.enrichment.base import Enrichment
from consumers.enrichment.geometry import geometry_re
from consumers.enrichment.zero_shot import ZeroShotMatcher, vocabulary
from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated

log = logging.getLogger("tailor.enrichment")


@lru_cache(maxsize=4096)
def _pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])")


def first_match(text: str, table: list[tuple[str, str]]) -> str | None:
    for phrase, value in table:
        if _pattern(phrase).search(text):
            return value
    return None


def _without(text: str, phrases: list[str]) -> str:
    for phrase in phrases:
        text = _pattern(phrase).sub(" ", text)
    return text


def _std_first(std: FlatAttributes, key: str) -> str:
    return (std.get(key) or [""])[0].lower()


def _std_term(std: FlatAttributes, key: str) -> str | None:
    values = std.get(key)
    return f"{key}={values[0].lower()}" if values else None


def _fibre_from_std(std: FlatAttributes) -> str | None:
    raw = _std_first(std, "fiber_composition")
    if not raw:
        return None
    return lx.FIBRE_FROM_STD.get(raw) or raw.split()[0].capitalize()


def _weight_from_std(std: FlatAttributes) -> str | None:
    """The weight word the seed's LLM read from fleece, transparency and season. Only for a
    garment whose STD describes its fabric: a season alone (a request's context text) is no
    fabric evidence."""
    if "transparency" not in std and "isfleece" not in std:
        return None
    if _std_first(std, "isfleece") == "fleece_contain":
        return "Fleece"
    return lx.WEIGHT_FROM_TRANSPARENCY.get(_std_first(std, "transparency")) or lx.WEIGHT_FROM_SEASON.get(
        _std_first(std, "season")
    )


def _fabric(text: str, std: FlatAttributes) -> str | None:
    fibre = first_match(text, lx.FIBRE) or _fibre_from_std(std)
    if fibre is None:
        return None
    return f"{fibre}_{first_match(text, lx.WEIGHT) or _weight_from_std(std) or 'Normal'}"


def _season(text: str, std: FlatAttributes) -> str | None:
    season = _std_first(std, "season")
    if _std_first(std, "isfleece") == "fleece_contain" and season in lx.FLEECE_SEASON:
        return first_match(text, lx.SEASON) or lx.FLEECE_SEASON[season]
    return first_match(text, lx.SEASON) or lx.SEASON_FROM_STD.get(season)


def garment_family_fine(fine: str, text: str) -> str:
    """The kfashion fine category a product belongs to (H&M says "trousers", the seed "pants"):
    measurement rules and structural keys are defined per kfashion category."""
    if fine in lx.CATEGORY_CODE:
        return fine
    title = text.split("\n", 1)[0]  # a description's "wear it with jeans" names another garment
    return first_match(fine.lower(), lx.FINE_CATEGORY) or first_match(title, lx.FINE_CATEGORY) or fine


def known_re(text: str, std: FlatAttributes, fine: str) -> dict[str, str]:
    """Steps 1-3: lexicons, measurement rules, STD mappings (no encoder)."""
    kfine = garment_family_fine(fine, text)
    geo = geometry_re(std, kfine)
    out: dict[str, str | None] = {
        "fit.vibe": first_match(text, lx.FIT_VIBE) or geo.get("fit.vibe"),
        "silhouette.shape": first_match(text, lx.SILHOUETTE)
        or geo.get("silhouette.shape")
        or lx.SILHOUETTE_FROM_STD.get(_std_term(std, "pants_silhouette") or "")
        or lx.SILHOUETTE_FROM_STD.get(_std_term(std, "skirt_design") or ""),
        "length.feeling": first_match(_without(text, lx.NOT_LENGTH), lx.LENGTH)
        or geo.get("length.feeling")
        or lx.LENGTH_FROM_STD.get(_std_term(std, "top_length_type") or ""),
        "fabric.feature": _fabric(text, std),
        "season": _season(text, std),
    }
    out.update({k: v for k, v in geo.items() if k not in out})
    for key, table in lx.STRUCTURE.items():  # text names what no measurement gave
        if key not in out and kfine in vocabulary().applies_to.get(key, ()):
            out[key] = first_match(text, table)
    colour = first_match(text, [(c, c) for c in lx.COLOURS])
    if colour:
        out["color"] = colour.capitalize()
    return {k: v for k, v in out.items() if v}


def _category(found: dict[str, str], fine: str) -> str:
    """A descriptive category in the seed's style ("wool_coat", "oversized_linen_shirt")."""
    fabric = found.get("fabric.feature")
    parts = [(found.get("fit.vibe") or "").split("/")[0].lower(), fabric.split("_")[0].lower() if fabric else "", fine]
    return "_".join(p.replace("-", "").replace(" ", "") for p in parts if p)


def zero_shot_keys(found: dict[str, str], matcher: ZeroShotMatcher, fine: str, text: str) -> list[str]:
    return [k for k in matcher.keys_for(garment_family_fine(fine, text)) if k not in found]


def finish(found: dict[str, str], guessed: dict[str, str], fine: str) -> FlatAttributes:
    """The RE block: known values, zero-shot guesses for the rest, and a category made from
    the known values only (so a guess never renames the product)."""
    out = {**guessed, **found, "category": _category(found, fine)}
    return {k: [v] for k, v in out.items() if v}


def rules_re(text: str, std: FlatAttributes, fine: str, zero_shot: ZeroShotMatcher | None = None) -> FlatAttributes:
    """RE attributes from lower-cased free text plus the STD block. Zero-shot runs only when a
    matcher is given (request contexts on the serving path skip the encoder)."""
    found = known_re(text, std, fine)
    guessed = zero_shot.match(text, zero_shot_keys(found, zero_shot, fine, text)) if zero_shot else {}
    return finish(found, guessed, fine)


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


def product_text(product: ProductCreated) -> str:
    return f"{product.title}\n{product.description}".lower()


class RulesEnricher:
    """``zero_shot=False`` keeps it encoder-free (lexicons, measurements and STD only)."""

    name = "rules"

    def __init__(self, zero_shot: bool = True, matcher: ZeroShotMatcher | None = None) -> None:
        self.matcher = (matcher or ZeroShotMatcher()) if zero_shot else None

    def enrich_now(self, products: Sequence[ProductCreated]) -> list[Enrichment]:
        """Synchronous, batched: one encoder call for all products' zero-shot texts."""
        texts = [product_text(p) for p in products]
        fines = [p.attributes.category()[1] for p in products]
        found = [known_re(t, p.attributes.std(), f) for t, p, f in zip(texts, products, fines, strict=True)]
        guessed: list[dict[str, str]] = [{} for _ in products]
        notes: list[str] = []
        if self.matcher is not None:
            keys = [zero_shot_keys(k, self.matcher, f, t) for k, f, t in zip(found, fines, texts, strict=True)]
            try:
                guessed = self.matcher.match_many(texts, keys)
            except Exception as exc:  # noqa: BLE001 - the lexicon/measurement values still stand
                log.warning("zero-shot matching failed, rules without it: %s", exc)
                notes = [f"zero-shot unavailable: {exc}"[:200]]
        return [
            Enrichment(re=finish(k, g, f), backend=self.name, notes=notes)
            for k, g, f in zip(found, guessed, fines, strict=True)
        ]

    async def enrich_many(self, products: Sequence[ProductCreated]) -> list[Enrichment]:
        if self.matcher is None:
            return self.enrich_now(products)
        # The encoder is CPU-bound: keep the event loop free while it runs.
        return await asyncio.to_thread(self.enrich_now, products)

    async def enrich(self, product: ProductCreated) -> Enrichment:
        return (await self.enrich_many([product]))[0]
