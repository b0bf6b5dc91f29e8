"""Request path: user vector -> Milvus top-N (filters, seen items excluded) -> MMR
rerank -> top-k with a reason per item."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from consumers.enrichment.rules import rules_re, text_to_std
from consumers.vector_store import Hit, VectorStore, filter_expr
from models.encoder import ItemEncoder
from models.rerank import mmr
from models.user_vector import KIND_WEIGHT, sequence_vector
from schemas.attributes import split_category
from schemas.events import (
    Filters,
    ProductEnriched,
    RecommendedItem,
    RecommendReply,
    RecommendRequest,
)
from streams.sequences import Popularity, UserSequence


def context_item(text: str) -> ProductEnriched:
    """A request's context text as a pseudo product, embedded like any new item."""
    std = text_to_std(text) or {"category": ["unknown"]}
    coarse, fine = split_category(std["category"][0])
    return ProductEnriched(
        product_id=0,
        title=text[:300] or "-",
        std=std,
        re=rules_re(text.lower(), std, fine),
        coarse=coarse,
        fine=fine,
        enricher="rules",
    )


RECENT_QUERIES = 4


def merge_hits(results: list[list[Hit]], limit: int) -> list[Hit]:
    """Union of several queries' hits; an item keeps its best score."""
    best: dict[int, Hit] = {}
    for hits in results:
        for hit in hits:
            if hit.product_id not in best or hit.score > best[hit.product_id].score:
                best[hit.product_id] = hit
    return sorted(best.values(), key=lambda h: -h.score)[:limit]


def _matches(row: dict[str, Any], filters: Filters | None) -> bool:
    if filters is None:
        return True
    return all(
        getattr(filters, f) is None or str(row.get(f, "")).lower() == getattr(filters, f).lower()
        for f in ("coarse", "fine", "gender")
    )


class Recommender:
    def __init__(self, store: VectorStore, encoder: ItemEncoder, popularity: Popularity, candidates: int) -> None:
        self.store = store
        self.encoder = encoder
        self.popularity = popularity
        self.candidates = candidates

    async def answer(
        self, req: RecommendRequest, seq: UserSequence | None, clock: Callable[[], float] = time.perf_counter
    ) -> RecommendReply:
        timings: dict[str, float] = {}
        t0 = clock()
        history = seq.product_ids() if seq else []
        seen = set(history) if req.exclude_seen else set()
        query, strategy, history_rows = await self._query(req, seq)
        timings["user_vector_ms"] = (clock() - t0) * 1000
        if query is None:
            items = await self._popular(req, seen)
            strategy = "popular"
        else:
            t1 = clock()
            expr = filter_expr(req.filters, sorted(seen))
            results = await asyncio.to_thread(self.store.search_many, query, self.candidates, expr)
            hits = merge_hits(results, self.candidates)
            timings["ann_ms"] = (clock() - t1) * 1000
            t2 = clock()
            items = await self._rerank(req, query, hits, history_rows, strategy)
            timings["rerank_ms"] = (clock() - t2) * 1000
        timings["total_ms"] = (clock() - t0) * 1000
        return RecommendReply(
            request_id=req.request_id,
            user_id=req.user_id,
            items=items,
            strategy=strategy,  # type: ignore[arg-type]
            model_version=self.encoder.version,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
        )

    async def _query(
        self, req: RecommendRequest, seq: UserSequence | None
    ) -> tuple[np.ndarray | None, str, dict[int, dict[str, Any]]]:
        if seq and seq.items:
            rows = await asyncio.to_thread(self.store.get, seq.product_ids())
            known = [it for it in seq.items if it.product_id in rows]
            if known:
                vecs = np.array([rows[it.product_id]["vector"] for it in known], dtype=np.float32)
                weights = np.array([KIND_WEIGHT.get(it.kind, 1.0) for it in known])
                # Multi-interest: the recency-weighted mean plus the latest distinct items,
                # so a user of coats AND sweaters is not reduced to their average.
                recent = list(dict.fromkeys(it.product_id for it in reversed(known)))[:RECENT_QUERIES]
                queries = [
                    sequence_vector(vecs, weights),
                    *(np.asarray(rows[p]["vector"], dtype=np.float32) for p in recent),
                ]
                return np.stack(queries), "sequence", rows
        if req.context and req.context.strip():
            return self.encoder.encode([context_item(req.context)]), "context", {}
        return None, "popular", {}

    async def _rerank(
        self,
        req: RecommendRequest,
        query: np.ndarray,
        hits: list[Hit],
        history_rows: dict[int, dict[str, Any]],
        strategy: str,
    ) -> list[RecommendedItem]:
        if not hits:
            return []
        rows = await asyncio.to_thread(self.store.get, [h.product_id for h in hits])
        hits = [h for h in hits if h.product_id in rows]
        vecs = np.array([rows[h.product_id]["vector"] for h in hits], dtype=np.float32)
        relevance = np.array([h.score for h in hits])
        order = mmr(relevance, vecs, req.k, req.diversity_lambda)
        hist_ids = list(history_rows)
        hist_vecs = np.array([history_rows[i]["vector"] for i in hist_ids], dtype=np.float32) if hist_ids else None
        out = []
        for idx in order:
            hit = hits[idx]
            if hist_vecs is not None:
                nearest = hist_ids[int(np.argmax(hist_vecs @ vecs[idx]))]
                reason = f"similar to '{history_rows[nearest].get('title', nearest)}' you viewed"
            else:
                reason = (
                    f"matches your search '{(req.context or '')[:60]}'" if strategy == "context" else "similar items"
                )
            out.append(
                RecommendedItem(
                    product_id=hit.product_id, score=round(hit.score, 5), reason=reason, title=hit.title, fine=hit.fine
                )
            )
        return out

    async def _popular(self, req: RecommendRequest, seen: set[int]) -> list[RecommendedItem]:
        ranked = self.popularity.top(req.k * 3, seen)
        reason = "popular now ({} interactions)"
        if not ranked:  # nothing clicked yet anywhere: any items of the catalog
            ids = await asyncio.to_thread(self.store.sample_ids, req.k * 3)
            ranked, reason = [(i, 0) for i in ids if i not in seen], "from the catalog (no interactions yet)"
        rows = await asyncio.to_thread(self.store.get, [p for p, _ in ranked], False)
        items = [
            RecommendedItem(
                product_id=p,
                score=float(c),
                reason=reason.format(c),
                title=rows[p].get("title", ""),
                fine=rows[p].get("fine", ""),
            )
            for p, c in ranked
            if p in rows and _matches(rows[p], req.filters)
        ]
        return items[: req.k]
