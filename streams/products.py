"""Product path: ProductCreated -> enrichment -> RE vocabulary growth -> item tower ->
Milvus upsert (pk = product_id) -> ProductEnriched."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from consumers.enrichment import Enricher, Enrichment
from consumers.enrichment.base import EnrichmentError
from consumers.vector_store import ItemRow, VectorStore
from models.encoder import ItemContent, ItemEncoder
from schemas.events import ProductCreated, ProductEnriched
from streams.retry import with_backoff

log = logging.getLogger("tailor.products")


async def enrichment_of(product: ProductCreated, enricher: Enricher) -> Enrichment:
    """RE attributes for a product: the ones it came with, else the enricher's."""
    given = product.attributes.re()
    if given:  # the shop (or an upstream LLM) already sent RE attributes
        return Enrichment(re=given, backend="source")
    try:
        return await enricher.enrich(product)
    except Exception as exc:  # noqa: BLE001 - a backend failure must not lose the product
        log.warning("enricher %s failed on product %s: %s", enricher.name, product.product_id, exc)
        return Enrichment(re={}, backend="none", notes=[f"{enricher.name} failed: {exc}"])


def to_enriched(
    product: ProductCreated, found: Enrichment, new_terms: list[str] | None = None, version: str = ""
) -> ProductEnriched:
    coarse, fine = product.attributes.category()
    std = product.attributes.std()
    return ProductEnriched(
        product_id=product.product_id,
        title=product.title,
        description=product.description,
        std=std,
        re=found.re,
        coarse=coarse,
        fine=fine,
        gender=(std.get("gender") or ["unisex"])[0].lower(),
        price=product.price,
        enricher=found.backend,
        enrichment_notes=found.notes,
        reenrich_pending=found.primary_failed is not None,
        new_re_terms=new_terms or [],
        model_version=version,
        created_at=product.created_at,
    )


def item_row(e: ProductEnriched, vector: list[float]) -> ItemRow:
    return ItemRow(
        product_id=e.product_id,
        vector=vector,
        title=e.title[:300],
        coarse=e.coarse,
        fine=e.fine,
        gender=e.gender,
        price=e.price or 0.0,
        model_version=e.model_version,
        features=features_json(e.std, e.re),
    )


FEATURES_BYTES = 16_000  # under the Milvus VARCHAR (16384, counted in UTF-8 bytes)


def features_json(std: dict[str, list[str]], re: dict[str, list[str]], limit: int = FEATURES_BYTES) -> str:
    """The STD/RE JSON stored with the vector (what the reranker and a re-embedding read),
    always valid JSON within ``limit`` bytes: past it, the last value of the longest list
    (RE before STD on a tie) goes until it fits, instead of cutting the text mid-JSON."""
    blocks = {"std": {k: list(v) for k, v in std.items()}, "re": {k: list(v) for k, v in re.items()}}
    text = json.dumps(blocks, ensure_ascii=False)
    while len(text.encode()) > limit:
        lists = [v for name in ("re", "std") for v in blocks[name].values() if v]
        if not lists:
            return json.dumps({"std": {}, "re": {}})
        max(lists, key=len).pop()
        text = json.dumps(blocks, ensure_ascii=False)
    return text


def row_item(row: dict[str, Any]) -> ItemContent:
    """A Milvus row as the reranker's item input, for the request path: the same fields as
    ``from_row`` without building (and validating) a whole ``ProductEnriched`` event with a
    fresh uuid4 event id and timestamps: a new candidate's features took 31-33 us with it,
    21 us without (the stored row was validated when it was written)."""
    feats = json.loads(row.get("features") or "{}")
    return ItemContent(
        title=row.get("title") or "-",
        std=feats.get("std", {}),
        re=feats.get("re", {}),
        coarse=row.get("coarse", ""),
        fine=row.get("fine", ""),
    )


def from_row(row: dict[str, Any]) -> ProductEnriched:
    """A Milvus row back into the enriched product it was embedded from (re-embedding)."""
    item = row_item(row)
    return ProductEnriched(
        product_id=int(row["product_id"]),
        title=item.title,
        std=item.std,
        re=item.re,
        coarse=item.coarse,
        fine=item.fine,
        gender=row.get("gender") or "unisex",
        price=row.get("price") or None,
        enricher="source",
        model_version=row.get("model_version", ""),
    )


class ProductPipeline:
    def __init__(self, enricher: Enricher, encoder: ItemEncoder, store: VectorStore) -> None:
        self.enricher = enricher
        self.encoder = encoder
        self.store = store
        # While a new item space is being filled, every write goes to it too ("mirror"),
        # and the ids written are remembered so the catch-up never overwrites them.
        self.mirror: ProductPipeline | None = None
        self.mirrored: set[int] = set()
        self.write_lock = asyncio.Lock()

    async def enrich(self, product: ProductCreated) -> ProductEnriched:
        return self._enriched(product, await enrichment_of(product, self.enricher))

    def _enriched(self, product: ProductCreated, found: Enrichment) -> ProductEnriched:
        """RE vocabulary expansion (new terms get ids now), then the event."""
        return to_enriched(product, found, self.encoder.register(found.re), self.encoder.version)

    async def process(self, products: list[ProductCreated]) -> list[ProductEnriched]:
        # The same product twice in one batch: the later event wins, one row is written.
        latest = {p.product_id: p for p in products}
        enriched = list(await asyncio.gather(*(self.enrich(p) for p in latest.values())))
        await self.index(enriched)
        return enriched

    async def reenrich(self, product: ProductCreated) -> ProductEnriched:
        """Ask the primary (LLM) enricher again, no fallback; on success re-embed and
        upsert under the same pk. Raises ``EnrichmentError`` while the LLM still fails."""
        primary = getattr(self.enricher, "enrich_primary", None)
        if primary is None:
            raise EnrichmentError(f"enricher {self.enricher.name} has no primary to ask again")
        enriched = self._enriched(product, await primary(product))
        await self.index([enriched])
        return enriched

    async def index(self, enriched: list[ProductEnriched]) -> None:
        vectors = self.encoder.encode(enriched)
        rows = [item_row(e, v.tolist()) for e, v in zip(enriched, vectors, strict=True)]
        await with_backoff(lambda: asyncio.to_thread(self.store.upsert, rows), "milvus upsert")
        mirror = self.mirror
        if mirror is not None:
            async with mirror.write_lock:
                mirror.encoder.encode_growing(enriched)  # the new tower's vocabulary grows too
                await mirror.index(enriched)
                mirror.mirrored.update(e.product_id for e in enriched)
