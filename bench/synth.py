"""A synthetic catalog of any size from the generator family of the bundled sample
(``streams/sample/make_catalog.py``): every product is drawn from one garment archetype,
so title, description, STD values, measurements and RE values agree, as in the sample.

The archetypes allow only ~670 distinct titles, and the item tower does not see the
jittered measurements, so at 100k items most vectors would repeat exactly (~3k distinct):
every exact duplicate ties in any top-k. Each product's title therefore starts with a
made-up product-line name ("Kalo", "Mira", ...; 5,625 of them), as a shop names its lines;
``lines=False`` leaves the sample's titles as they are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from consumers.enrichment import Enrichment
from schemas.events import ProductCreated, ProductEnriched
from streams.products import to_enriched
from streams.sample import make_catalog as gen

FIRST_ID = 10_000_001
_ONSETS = ("b", "d", "f", "k", "l", "m", "n", "r", "s", "t", "v", "z", "br", "st", "tr")
SYLLABLES = [o + v for o in _ONSETS for v in "aeiou"]
LINES = [
    (a + b).capitalize() for a in SYLLABLES for b in SYLLABLES
]  # far above the sample's ids (100001..) and the H&M / kfashion ids used elsewhere


def products(
    n: int, seed: int = 0, first_id: int = FIRST_ID, with_re: float = 1.0, lines: bool = True
) -> Iterator[ProductCreated]:
    """``n`` products; a share ``with_re`` of them carry RE attributes (the rest must be
    enriched, as 30% of the sample must)."""
    rng = random.Random(seed)
    categories = list(gen.CATEGORY_COUNT)
    weights = [gen.CATEGORY_COUNT[c] for c in categories]
    for i in range(n):
        category = rng.choices(categories, weights)[0]
        arch = rng.choice(gen.ARCHETYPES[category])
        product = gen.make_product(
            rng,
            first_id + i,
            category,
            arch,
            rng.choice(arch["genders"]),
            rng.choice(arch["seasons"]),
            rng.choice(arch["mats"]),
            rng.choice(arch["colors"]),
            rng.random() < with_re,
        )
        if lines:
            product["title"] = f"{rng.choice(LINES)} {product['title']}"
        yield ProductCreated.model_validate(product)


def without_re(product: ProductCreated) -> ProductCreated:
    """The product as a shop would send it before enrichment: no RE attributes."""
    attrs = product.attributes.model_copy(update={"reinforced_feature_value": None})
    return product.model_copy(update={"attributes": attrs})


def as_enriched(product: ProductCreated) -> ProductEnriched:
    """A product with RE attributes, enriched as the worker does it (RE kept from the source)."""
    return to_enriched(product, Enrichment(re=product.attributes.re(), backend="source"))
