"""Request path: user tower -> Milvus top-100 (filters, seen items excluded) -> DeepFM ->
self-attention diversity reranker (lambda per request) -> top-k with a reason per item.

A model version without trained ranking stages (a fresh install) serves the walking
skeleton's path: multi-interest sequence queries and MMR over the ANN scores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from consumers.enrichment.rules import rules_re, text_to_std
from consumers.vector_store import Hit, VectorStore, filter_expr
from models.cooccurrence import CoOccurrence
from models.encoder import ItemEncoder
from models.ranking import EXPLORE_SLOTS, Candidates, RankingModels, rank
from models.reranker import ItemFeatures, UserFeatures, item_features, user_features
from models.user_tower import UserState
from models.user_vector import KIND_WEIGHT, sequence_vector
from schemas.attributes import split_category
from schemas.events import (
    Filters,
    ProductEnriched,
    RecommendedItem,
    RecommendReply,
    RecommendRequest,
)
from streams.products import row_item
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


def _hit(row: dict[str, Any]) -> Hit:
    return Hit(product_id=int(row["product_id"]), score=0.0, **{k: row.get(k, "") for k in ("title", "coarse", "fine")})


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
    price = float(row.get("price") or 0.0)
    return (
        all(
            getattr(filters, f) is None or str(row.get(f, "")).lower() == getattr(filters, f).lower()
            for f in ("coarse", "fine", "gender")
        )
        and (filters.price_min is None or price >= filters.price_min)
        and (filters.price_max is None or price <= filters.price_max)
    )


FEATURE_CACHE = 200_000
# Of the candidates, how many come from popularity when DeepFM ranks them (as in training,
# ``models.train_ranking.candidate_rows``): content reaches new items, popularity what a
# frozen content space cannot express.
POPULAR_CANDIDATES = 20
# ... and how many from co-occurrence with the history (``models.cooccurrence``, shipped in
# the model version; as ``RankingTrainConfig.cooc_candidates``).
COOC_CANDIDATES = 30


def cooccurring(
    table: CoOccurrence | None, history: list[int], taken: set[int], scores: dict[int, float] | None = None
) -> list[int]:
    """Candidate ids co-occurring with the history, none of ``taken`` (no table: none);
    ``scores``: the table's scores for the history, when computed already."""
    if table is None or not history:
        return []
    return table.candidates(history, COOC_CANDIDATES, taken, scores=scores)


def cooc_features(
    table: CoOccurrence | None, history: list[int], ids: list[int], scores: dict[int, float] | None = None
) -> np.ndarray | None:
    """DeepFM's co-occurrence inputs per candidate (no table: None = unknown)."""
    return table.features(history, ids, scores=scores) if table is not None else None


class Recommender:
    def __init__(
        self,
        store: VectorStore,
        encoder: ItemEncoder,
        popularity: Popularity,
        candidates: int,
        ranking: RankingModels | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.popularity = popularity
        self.candidates = candidates
        self.ranking = ranking or RankingModels()
        # (product_id, features JSON) -> reranker features: a changed product misses.
        self._features: dict[tuple[int, str], ItemFeatures] = {}

    async def answer(
        self, req: RecommendRequest, seq: UserSequence | None, clock: Callable[[], float] = time.perf_counter
    ) -> RecommendReply:
        timings: dict[str, float] = {}
        t0 = clock()
        history = seq.product_ids() if seq else []
        seen = set(history) if req.exclude_seen else set()
        # The context text is embedded here, on the event loop: the item tower grows its RE
        # table there when a product brings new terms, and a thread could see an id before
        # its row. The rest runs in two worker-thread calls (history rows + user tower, then
        # search + candidate rows + ranking): torch, numpy and the Milvus client release the
        # GIL, so one request's towers overlap another's I/O instead of stalling the event
        # loop (and the Kafka fetches), and each hop to a thread and back (a wake-up of each
        # side, slow when the CPU is oversubscribed) is paid twice per request, not 5 times.
        context = self._context_vector(req)
        query, strategy, history_rows = await asyncio.to_thread(self._user_query, req, seq, history, context)
        timings["user_tower_ms"] = (clock() - t0) * 1000
        if query is None:
            items = await self._popular(req, seen)
            strategy = "popular"
        else:
            # Ranked here, on the loop, where the interaction agent updates the counts; the
            # longest prefix ``_with_popular`` can read (cached for ``refresh_s``).
            popular = self.popularity.top(POPULAR_CANDIDATES + COOC_CANDIDATES + self.candidates + len(seen), set())
            items = await asyncio.to_thread(
                self._retrieve_and_rank, req, query, seen, history, history_rows, popular, timings, clock
            )
        timings["total_ms"] = (clock() - t0) * 1000
        return RecommendReply(
            request_id=req.request_id,
            user_id=req.user_id,
            items=items,
            strategy=strategy,  # type: ignore[arg-type]
            model_version=self.encoder.version,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
        )

    def _user_query(
        self, req: RecommendRequest, seq: UserSequence | None, history: list[int], context: np.ndarray | None
    ) -> tuple[np.ndarray | None, str, dict[int, dict[str, Any]]]:
        """(query vectors, strategy, the history's rows), in a worker thread."""
        history_rows = self.store.get(history) if history else {}
        query, strategy = self._query(req, seq, history_rows, context)
        return query, strategy, history_rows

    def _retrieve_and_rank(
        self,
        req: RecommendRequest,
        query: np.ndarray,
        seen: set[int],
        history: list[int],
        history_rows: dict[int, dict[str, Any]],
        popular: list[tuple[int, int]],
        timings: dict[str, float],
        clock: Callable[[], float],
    ) -> list[RecommendedItem]:
        """Milvus top-N, the candidate rows, the ranking stages; in a worker thread."""
        t1 = clock()
        expr = filter_expr(req.filters, sorted(seen))
        # Ids and scores only: the rows (title included) come from the store's row cache.
        results = self.store.search_many(query, self.candidates, expr, ())
        hits = merge_hits(results, self.candidates)
        # The history's co-occurrence scores, once: candidates and DeepFM inputs both read them.
        table = self.ranking.cooccurrence
        cooc = table.scores(history) if table is not None and self.ranking.deepfm is not None else None
        hits, extra = self._with_popular(hits, seen, history, popular, cooc)
        ids = [h.product_id for h in hits] + extra
        rows = self.store.get(ids) if ids else {}
        hits += [_hit(rows[p]) for p in extra if p in rows and _matches(rows[p], req.filters)]
        timings["ann_ms"] = (clock() - t1) * 1000
        ranked = [h for h in hits if h.product_id in rows]
        return self._rank(req, query[0], ranked, rows, history_rows, timings, history, cooc)

    def _with_popular(
        self,
        hits: list[Hit],
        seen: set[int],
        history: list[int],
        ranked: list[tuple[int, int]],
        cooc_scores: dict[int, float] | None = None,
    ) -> tuple[list[Hit], list[int]]:
        """The best retrieved hits plus co-occurring and popular ids not among them (trained
        pipelines only), as ``models.train_ranking.candidate_rows`` offline. ``ranked``:
        ``Popularity.top`` of at least ``POPULAR_CANDIDATES + COOC_CANDIDATES +
        candidates + len(seen)`` items, so its prefix is what ``top`` would give here."""
        if self.ranking.deepfm is None:
            return hits, []
        keep = hits[: self.candidates - POPULAR_CANDIDATES - (COOC_CANDIDATES if self.ranking.cooccurrence else 0)]
        taken = {h.product_id for h in keep} | seen
        cooc = cooccurring(self.ranking.cooccurrence, history, taken, cooc_scores)
        taken |= set(cooc)
        popular = [p for p, _ in ranked[: POPULAR_CANDIDATES + len(taken)] if p not in taken]
        popular = popular[:POPULAR_CANDIDATES]
        # A source that ran dry (a short history co-occurs with few items) leaves its places
        # to further retrieved hits, as ``merge_sources`` does offline: still ``candidates``.
        short = self.candidates - len(keep) - len(cooc) - len(popular)
        if short > 0:
            taken |= set(popular)
            keep = keep + [h for h in hits[len(keep) :] if h.product_id not in taken][:short]
        return keep, cooc + popular

    def _context_vector(self, req: RecommendRequest) -> np.ndarray | None:
        if req.context and req.context.strip():
            return self.encoder.encode([context_item(req.context)])[0]
        return None

    def _query(
        self,
        req: RecommendRequest,
        seq: UserSequence | None,
        rows: dict[int, dict[str, Any]],
        context: np.ndarray | None,
    ) -> tuple[np.ndarray | None, str]:
        known = [it for it in (seq.items if seq else []) if it.product_id in rows]
        if not known and context is None:
            return None, "popular"
        if not known:
            # Context only: the text's own vector. The user tower learnt from sequences (the
            # context was an extra in a fifth of them), so a bare query is matched by content.
            return context[None, :], "context"  # type: ignore[index]
        tower = self.ranking.user_tower
        if tower is not None:
            now = time.time()
            state = UserState(
                vectors=np.array([rows[it.product_id]["vector"] for it in known], dtype=np.float32).reshape(-1, 128),
                kinds=[it.kind for it in known],
                hours_ago=[(now - it.ts.timestamp()) / 3600.0 for it in known],
                context=context,
                profile=req.profile.model_dump() if req.profile else None,
            )
            return tower.encode([state]), "sequence"
        vecs = np.array([rows[it.product_id]["vector"] for it in known], dtype=np.float32)
        weights = np.array([KIND_WEIGHT.get(it.kind, 1.0) for it in known])
        # Untrained fallback, multi-interest: the recency-weighted mean plus the latest
        # distinct items, so a user of coats AND sweaters is not reduced to their average.
        recent = list(dict.fromkeys(it.product_id for it in reversed(known)))[:RECENT_QUERIES]
        queries = [sequence_vector(vecs, weights), *(np.asarray(rows[p]["vector"], dtype=np.float32) for p in recent)]
        return np.stack(queries), "sequence"

    def _item_features(self, row: dict[str, Any]) -> ItemFeatures:
        key = (int(row["product_id"]), row.get("features") or "")
        found = self._features.get(key)
        if found is None:
            if len(self._features) >= FEATURE_CACHE:
                self._features.clear()
            found = self._features[key] = item_features(self.encoder, row_item(row), row.get("price"))
        return found

    def _user_features(self, req: RecommendRequest, history_rows: dict[int, dict[str, Any]]) -> UserFeatures:
        tower = self.ranking.user_tower
        profile = tower.cfg.profile.features(req.profile.model_dump() if req.profile else None) if tower else None
        return user_features([self._item_features(r) for r in history_rows.values()], profile)

    def _rank(
        self,
        req: RecommendRequest,
        user_vector: np.ndarray,
        hits: list[Hit],
        rows: dict[int, dict[str, Any]],
        history_rows: dict[int, dict[str, Any]],
        timings: dict[str, float],
        history: list[int] | None = None,
        cooc_scores: dict[int, float] | None = None,
    ) -> list[RecommendedItem]:
        if not hits:
            return []
        vecs = np.array([rows[h.product_id]["vector"] for h in hits], dtype=np.float32)
        cands = Candidates(
            vectors=vecs,
            ann=vecs @ user_vector,
            features=[self._item_features(rows[h.product_id]) for h in hits],
            popularity=np.array([self.popularity.counts[h.product_id] for h in hits], dtype=np.float32),
            cooc=cooc_features(self.ranking.cooccurrence, history or [], [h.product_id for h in hits], cooc_scores),
        )
        hist_ids = list(history_rows)
        hist_vecs = np.array([history_rows[i]["vector"] for i in hist_ids], dtype=np.float32) if hist_ids else None
        user = self._user_features(req, history_rows)
        explore = EXPLORE_SLOTS if req.explore_slots is None else req.explore_slots  # per request, else the default
        lam = req.diversity_lambda
        order = rank(self.ranking, user_vector, user, cands, hist_vecs, req.k, lam, explore_slots=explore)
        timings.update(cands.timings_ms)
        return [
            RecommendedItem(
                product_id=hits[i].product_id,
                score=round(float(cands.ann[i]), 5),
                reason=self._reason(req, i, cands, hist_ids, hist_vecs, history_rows, user),
                title=rows[hits[i].product_id].get("title", ""),
                fine=rows[hits[i].product_id].get("fine", ""),
            )
            for i in order
        ]

    def _reason(
        self,
        req: RecommendRequest,
        i: int,
        cands: Candidates,
        hist_ids: list[int],
        hist_vecs: np.ndarray | None,
        history_rows: dict[int, dict[str, Any]],
        user: UserFeatures,
    ) -> str:
        """The nearest history item, and the attributes the item shares with the history."""
        liked = set(user.re)
        shared = [self.encoder.re_vocab.tokens[t] for t in cands.features[i].re if t in liked][:3]
        matching = f" (shares {', '.join(s.replace('=', ': ') for s in shared)})" if shared else ""
        if hist_vecs is not None:
            nearest = hist_ids[int(np.argmax(hist_vecs @ cands.vectors[i]))]
            return f"similar to '{history_rows[nearest].get('title', nearest)}' you viewed{matching}"
        return f"matches your search '{(req.context or '')[:60]}'" if req.context else "similar items"

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
