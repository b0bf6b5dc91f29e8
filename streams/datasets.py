"""The item side of the shared real data sets, mapped onto STD / RE / title as
``../shared/data/README.md`` says, as enriched items the trainer and the benchmarks use.

* kfashion seed JSON: STD = ``clothes``, RE = ``reinforced_feature_value`` (the seed's LLM
  output), category ``01outer_01coat`` -> outer > coat. No titles: made from STD.
* H&M ``articles.csv``: STD = product group/type, colour, graphical appearance, section,
  garment group, index group; RE = what the enricher extracts from ``prod_name`` +
  ``detail_desc``; title = ``prod_name``; hierarchy product_group_name > product_type_name.
* MovieLens ``movies.csv`` + ``tags.csv``: STD = genres; RE = the users' free-text tags;
  title = the movie title; hierarchy first genre > first two genres.
"""

from __future__ import annotations

import asyncio
import csv
from collections import defaultdict
from pathlib import Path

from consumers.enrichment import Enrichment, make_enricher
from schemas.events import ProductCreated, ProductEnriched
from schemas.limits import MAX_ATTR_LIST, MAX_ATTR_VALUE_CHARS, MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS
from streams.catalog import load_catalog
from streams.products import enrichment_of, to_enriched

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HM_STD_COLUMNS = {
    "product_group": "product_group_name",
    "product_type": "product_type_name",
    "color": "colour_group_name",
    "graphical_appearance": "graphical_appearance_name",
    "section": "section_name",
    "garment_group": "garment_group_name",
    "index_group": "index_group_name",
}


async def _enrich_all(products: list[ProductCreated], enricher: str) -> list[ProductEnriched]:
    backend = make_enricher(enricher)
    return [to_enriched(p, await enrichment_of(p, backend)) for p in products]


def enrich(products: list[ProductCreated], enricher: str = "rules") -> list[ProductEnriched]:
    """As the worker does it: RE the product came with is kept, else the enricher's."""
    return asyncio.run(_enrich_all(products, enricher))


def catalog_items(path: str) -> list[ProductEnriched]:
    """A catalog file, glob or folder (see ``streams.catalog``), enriched."""
    return enrich(list(load_catalog(path)))


def kfashion(path: str | None = None, hide_re: bool = False) -> list[ProductEnriched]:
    products = list(load_catalog(path or str(SHARED_DATA / "kfashion-seed" / "*.json")))
    if hide_re:  # the enricher must derive RE from STD + measurements alone
        products = [
            p.model_copy(update={"attributes": p.attributes.model_copy(update={"reinforced_feature_value": None})})
            for p in products
        ]
    return enrich(products)


def _clip(text: str, limit: int) -> str:
    return text.strip()[:limit]


def hm_articles(path: Path | None = None, limit: int | None = None) -> list[ProductEnriched]:
    path = path or SHARED_DATA / "hm-sample" / "articles.csv"
    products = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            clothes = {k: _clip(row[c], MAX_ATTR_VALUE_CHARS) for k, c in HM_STD_COLUMNS.items() if row.get(c)}
            clothes["category"] = f"{row['product_group_name']}/{row['product_type_name']}"
            products.append(
                ProductCreated(
                    product_id=int(row["article_id"]),
                    title=_clip(row["prod_name"], MAX_TITLE_CHARS) or row["product_type_name"],
                    description=_clip(row.get("detail_desc") or "", MAX_DESCRIPTION_CHARS),
                    attributes={"clothes": clothes},
                )
            )
            if limit and len(products) >= limit:
                break
    return enrich(products)


def movielens(folder: Path | None = None, limit: int | None = None) -> list[ProductEnriched]:
    folder = folder or SHARED_DATA / "movielens-small"
    tags: dict[str, list[str]] = defaultdict(list)
    with (folder / "tags.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tag = _clip(row["tag"].lower(), MAX_ATTR_VALUE_CHARS)
            if tag and tag not in tags[row["movieId"]]:
                tags[row["movieId"]].append(tag)
    products = []
    with (folder / "movies.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"] or ["none"]
            fine = "|".join(genres[:2])
            products.append(
                ProductCreated(
                    product_id=int(row["movieId"]),
                    title=_clip(row["title"], MAX_TITLE_CHARS),
                    attributes={
                        "clothes": {"category": f"{genres[0]}/{fine}", "genre": genres[:MAX_ATTR_LIST]},
                        "reinforced_feature_value": {"tag": tags[row["movieId"]][:MAX_ATTR_LIST]} or None,
                    },
                )
            )
            if limit and len(products) >= limit:
                break
    # Tags are the RE block; a movie without tags has none (the fashion lexicons of the
    # rules enricher mean nothing for films).
    return [to_enriched(p, Enrichment(re=p.attributes.re(), backend="source")) for p in products]


NAMED = {"kfashion": kfashion, "hm": hm_articles, "movielens": movielens}


def load_items(data: str) -> list[ProductEnriched]:
    """``kfashion`` / ``hm`` / ``movielens`` (the shared data sets), ``sample`` (the bundled
    catalog) or a catalog path/glob."""
    loader = NAMED.get(data)
    return loader() if loader else catalog_items(data)
