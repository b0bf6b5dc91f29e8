"""Request path: user tower -> Milvus top-100 (filters, seen items excluded) -> DeepFM ->
self-attention diversity reranker (lambda per request) -> top-k with a reason per item.

A model version without trained ranking stages (a fresh install) serves the walking
skeleton's path: multi-interest sequence queries and MMR over the ANN scores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumers.enrichment.rules import rules_re, text_to_std
from consumers.vector_store import Hit, VectorStore, filter_expr
from models.cooccurrence import CoOccurrence
from models.encoder import ItemEncoder
from models.ranking import EXPLORE_SLOTS, Candidates, RankingModels, RankInput, rank_many
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
from streams.batching import MicroBatcher
from streams.metrics import REQUEST_BATCH
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
POPULAR_CANDIDATES = 10
# ... and how many from co-occurrence with the history (``models.cooccurrence``, shipped in
# the model version; as ``RankingTrainConfig.cooc_candidates``).
COOC_CANDIDATES = 30
# ... and how many are the version's SASRec's best next items (``models.sasrec``; as
# ``RankingTrainConfig.sasrec_candidates``).
SASREC_CANDIDATES = 20


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


@dataclass
class _Job:
    """One request inside a micro-batch, as it moves through the stages."""

    req: RecommendRequest
    seq: UserSequence | None
    history: list[int]
    seen: set[int]
    timings: dict[str, float] = field(default_factory=dict)
    context: np.ndarray | None = None
    query: np.ndarray | None = None
    strategy: str = "popular"
    history_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    items: list[RecommendedItem] = field(default_factory=list)


class Recommender:
    def __init__(
        self,
        store: VectorStore,
        encoder: ItemEncoder,
        popularity: Popularity,
        candidates: int,
        ranking: RankingModels | None = None,
        batch: int = 16,
        batches_in_flight: int = 1,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.popularity = popularity
        self.candidates = candidates
        self.ranking = ranking or RankingModels()
        # (product_id, features JSON) -> reranker features: a changed product misses.
        self._features: dict[tuple[int, str], ItemFeatures] = {}
        # Concurrent requests are answered in micro-batches (``streams.batching``): one
        # forward of each model and one Milvus call per stage for the whole batch.
        self._batcher: MicroBatcher[tuple[RecommendRequest, UserSequence | None, float], RecommendReply]
        self._batcher = MicroBatcher(self._answer_batch, batch, batches_in_flight, REQUEST_BATCH.observe)

    def follow(self, previous: Recommender) -> None:
        """Answer nothing before ``previous`` has answered what it holds (a hot swap keeps
        the versions of the replies in order; ``MicroBatcher.after``)."""
        self._batcher.after(previous._batcher)

    async def answer(self, req: RecommendRequest, seq: UserSequence | None) -> RecommendReply:
        """The reply to one request; concurrent calls are answered in micro-batches."""
        return await self._batcher.submit((req, seq, time.perf_counter()))

    async def answer_many(
        self, requests: Sequence[tuple[RecommendRequest, UserSequence | None]]
    ) -> list[RecommendReply]:
        """The replies to several requests, answered together (as one micro-batch)."""
        now = time.perf_counter()
        return await self._answer_batch([(req, seq, now) for req, seq in requests])

    async def _answer_batch(
        self, batch: Sequence[tuple[RecommendRequest, UserSequence | None, float]]
    ) -> list[RecommendReply]:
        """``batch``: (request, its user's sequence, when it was submitted)."""
        t0 = time.perf_counter()
        jobs = []
        for req, seq, submitted in batch:
            history = seq.product_ids() if seq else []
            job = _Job(req, seq, history, set(history) if req.exclude_seen else set())
            job.timings["queue_ms"] = (t0 - submitted) * 1000  # waited for a batch slot
            jobs.append(job)
        # The context texts are embedded here, on the event loop: the item tower grows its
        # RE table there when a product brings new terms, and a thread could see an id before
        # its row. The rest runs in two worker-thread calls (history rows + user tower, then
        # search + candidate rows + ranking): torch, numpy and the Milvus client release the
        # GIL, so one batch's towers overlap another's I/O instead of stalling the event
        # loop (and the Kafka fetches), and each hop to a thread and back (a wake-up of each
        # side, slow when the CPU is oversubscribed) is paid twice per batch.
        self._context_vectors(jobs)
        await asyncio.to_thread(self._user_queries, jobs)
        t1 = time.perf_counter()
        for job in jobs:
            job.timings["user_tower_ms"] = (t1 - t0) * 1000
        with_query = [job for job in jobs if job.query is not None]
        if with_query:
            # Ranked here, on the loop, where the interaction agent updates the counts; the
            # longest prefix ``_with_popular`` can read (cached for ``refresh_s``).
            extra = POPULAR_CANDIDATES + COOC_CANDIDATES + SASREC_CANDIDATES
            wanted = extra + self.candidates + max(len(j.seen) for j in with_query)
            popular = self.popularity.top(wanted, set())
            await asyncio.to_thread(self._retrieve_and_rank, with_query, popular)
        for job in jobs:
            if job.query is None:
                job.items, job.strategy = await self._popular(job.req, job.seen), "popular"
        done = time.perf_counter()
        return [self._reply(job, done, submitted) for job, (_, _, submitted) in zip(jobs, batch, strict=True)]

    def _reply(self, job: _Job, done: float, submitted: float) -> RecommendReply:
        job.timings["total_ms"] = (done - submitted) * 1000
        return RecommendReply(
            request_id=job.req.request_id,
            user_id=job.req.user_id,
            items=job.items,
            strategy=job.strategy,  # type: ignore[arg-type]
            model_version=self.encoder.version,
            timings_ms={k: round(v, 3) for k, v in job.timings.items()},
        )

    def _context_vectors(self, jobs: list[_Job]) -> None:
        texts = [job for job in jobs if job.req.context and job.req.context.strip()]
        if texts:
            vectors = self.encoder.encode([context_item(job.req.context or "") for job in texts])
            for job, vector in zip(texts, vectors, strict=True):
                job.context = vector

    def _user_queries(self, jobs: list[_Job]) -> None:
        """Each job's history rows, query vectors and strategy, in a worker thread: one
        Milvus read for every history and one user-tower forward for the batch."""
        ids = list(dict.fromkeys(p for job in jobs for p in job.history))
        rows = self.store.get(ids) if ids else {}
        for job in jobs:
            job.history_rows = {p: rows[p] for p in job.history if p in rows}
        tower = self.ranking.user_tower
        states: list[tuple[_Job, UserState]] = []
        for job in jobs:
            known = [it for it in (job.seq.items if job.seq else []) if it.product_id in job.history_rows]
            if not known and job.context is None:
                continue  # popular
            if not known:
                # Context only: the text's own vector. The user tower learnt from sequences
                # (the context was an extra in a fifth of them), so a bare query is matched
                # by content.
                job.query, job.strategy = job.context[None, :], "context"  # type: ignore[index]
            elif tower is not None:
                states.append((job, self._user_state(job, known)))
            else:
                job.query, job.strategy = self._mean_queries(job, known), "sequence"
        if states and tower is not None:
            for (job, _), vector in zip(states, tower.encode([state for _, state in states]), strict=True):
                job.query, job.strategy = vector[None, :], "sequence"

    def _user_state(self, job: _Job, known: list[Any]) -> UserState:
        now = time.time()
        rows = job.history_rows
        return UserState(
            vectors=np.array([rows[it.product_id]["vector"] for it in known], dtype=np.float32).reshape(-1, 128),
            kinds=[it.kind for it in known],
            hours_ago=[(now - it.ts.timestamp()) / 3600.0 for it in known],
            context=job.context,
            profile=job.req.profile.model_dump() if job.req.profile else None,
        )

    def _mean_queries(self, job: _Job, known: list[Any]) -> np.ndarray:
        """Untrained fallback, multi-interest: the recency-weighted mean plus the latest
        distinct items, so a user of coats AND sweaters is not reduced to their average."""
        rows = job.history_rows
        vecs = np.array([rows[it.product_id]["vector"] for it in known], dtype=np.float32)
        weights = np.array([KIND_WEIGHT.get(it.kind, 1.0) for it in known])
        recent = list(dict.fromkeys(it.product_id for it in reversed(known)))[:RECENT_QUERIES]
        queries = [sequence_vector(vecs, weights), *(np.asarray(rows[p]["vector"], dtype=np.float32) for p in recent)]
        return np.stack(queries)

    def _search(self, jobs: list[_Job]) -> list[list[Hit]]:
        """Each job's retrieved hits (seen items excluded), one ANN call per distinct filter.
        The seen items are dropped here rather than in Milvus' expression, so one call
        serves many users: each asks for ``candidates`` + its history's length."""
        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(filter_expr(job.req.filters), []).append(i)
        out: list[list[Hit]] = [[] for _ in jobs]
        for expr, members in groups.items():
            queries = [jobs[i].query for i in members]
            limit = self.candidates + max(len(jobs[i].seen) for i in members)
            # Ids and scores only: the rows (title included) come from the store's row cache.
            results = self.store.search_many(np.concatenate(queries), limit, expr, ())  # type: ignore[arg-type]
            bounds = np.cumsum([0] + [len(q) for q in queries])  # type: ignore[arg-type]
            for i, lo, hi in zip(members, bounds[:-1], bounds[1:], strict=True):
                seen = jobs[i].seen
                unseen = [[h for h in hits if h.product_id not in seen] for hits in results[lo:hi]]
                out[i] = merge_hits(unseen, self.candidates)
        return out

    def _retrieve_and_rank(self, jobs: list[_Job], popular: list[tuple[int, int]]) -> None:
        """Milvus top-N, the candidate rows, the ranking stages; in a worker thread."""
        t1 = time.perf_counter()
        found = self._search(jobs)
        table = self.ranking.cooccurrence
        next_scores = self._sasrec_scores(jobs)  # candidates and DeepFM inputs both read them
        picked = []
        for i, (job, hits) in enumerate(zip(jobs, found, strict=True)):
            # The history's co-occurrence scores, once: candidates and DeepFM inputs both read them.
            cooc = table.scores(job.history) if table is not None and self.ranking.deepfm is not None else None
            seq = next_scores[i] if next_scores is not None else None
            hits, extra = self._with_popular(hits, job.seen, job.history, popular, cooc, seq)
            picked.append((hits, extra, cooc, seq))
        ids = list(dict.fromkeys(p for hits, extra, *_ in picked for p in [h.product_id for h in hits] + extra))
        rows = self.store.get(ids) if ids else {}
        t2 = time.perf_counter()
        inputs: list[tuple[_Job, list[Hit], RankInput]] = []
        for job, (hits, extra, cooc, seq) in zip(jobs, picked, strict=True):
            hits = hits + [_hit(rows[p]) for p in extra if p in rows and _matches(rows[p], job.req.filters)]
            job.timings["ann_ms"] = (t2 - t1) * 1000
            ranked = [h for h in hits if h.product_id in rows]
            if ranked:
                inputs.append((job, ranked, self._rank_input(job, ranked, rows, cooc, seq)))
        orders = rank_many(self.ranking, [x for _, _, x in inputs])
        for (job, hits, x), order in zip(inputs, orders, strict=True):
            job.timings.update(x.cands.timings_ms)
            job.items = self._items(job, hits, rows, x, order)

    def _sasrec_scores(self, jobs: list[_Job]) -> np.ndarray | None:
        """Each job's SASRec next-item scores, one forward for the micro-batch (None: the
        version has no SASRec, or no DeepFM to read them)."""
        model = self.ranking.sasrec
        if model is None or self.ranking.deepfm is None:
            return None
        return model.scores([job.history for job in jobs])

    def _with_popular(
        self,
        hits: list[Hit],
        seen: set[int],
        history: list[int],
        ranked: list[tuple[int, int]],
        cooc_scores: dict[int, float] | None = None,
        next_scores: np.ndarray | None = None,
    ) -> tuple[list[Hit], list[int]]:
        """The best retrieved hits plus co-occurring, SASRec's and popular ids not among them
        (trained pipelines only), as ``models.train_ranking.candidate_rows`` offline. ``ranked``:
        ``Popularity.top`` of at least ``POPULAR_CANDIDATES + COOC_CANDIDATES +
        SASREC_CANDIDATES + candidates + len(seen)`` items, so its prefix is what ``top`` would give here."""
        if self.ranking.deepfm is None:
            return hits, []
        sasrec = self.ranking.sasrec
        places = POPULAR_CANDIDATES + (COOC_CANDIDATES if self.ranking.cooccurrence else 0)
        keep = hits[: self.candidates - places - (SASREC_CANDIDATES if next_scores is not None else 0)]
        taken = {h.product_id for h in keep} | seen
        cooc = cooccurring(self.ranking.cooccurrence, history, taken, cooc_scores)
        taken |= set(cooc)
        nexts = sasrec.candidates(next_scores, SASREC_CANDIDATES, taken) if sasrec and next_scores is not None else []
        taken |= set(nexts)
        popular = [p for p, _ in ranked[: POPULAR_CANDIDATES + len(taken)] if p not in taken]
        popular = popular[:POPULAR_CANDIDATES]
        # A source that ran dry (a short history co-occurs with few items) leaves its places
        # to further retrieved hits, as ``merge_sources`` does offline: still ``candidates``.
        short = self.candidates - len(keep) - len(cooc) - len(nexts) - len(popular)
        if short > 0:
            taken |= set(popular)
            keep = keep + [h for h in hits[len(keep) :] if h.product_id not in taken][:short]
        return keep, cooc + nexts + popular

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

    def _sasrec_features(self, next_scores: np.ndarray | None, ids: list[int]) -> np.ndarray | None:
        model = self.ranking.sasrec
        return model.features(next_scores, ids) if model is not None and next_scores is not None else None

    def _rank_input(
        self,
        job: _Job,
        hits: list[Hit],
        rows: dict[int, dict[str, Any]],
        cooc: dict[int, float] | None,
        next_scores: np.ndarray | None = None,
    ) -> RankInput:
        vecs = np.array([rows[h.product_id]["vector"] for h in hits], dtype=np.float32)
        user_vector = job.query[0]  # type: ignore[index]
        cands = Candidates(
            vectors=vecs,
            ann=vecs @ user_vector,
            features=[self._item_features(rows[h.product_id]) for h in hits],
            popularity=np.array([self.popularity.counts[h.product_id] for h in hits], dtype=np.float32),
            cooc=cooc_features(self.ranking.cooccurrence, job.history, [h.product_id for h in hits], cooc),
            seq=self._sasrec_features(next_scores, [h.product_id for h in hits]),
        )
        hist = job.history_rows
        hist_vecs = np.array([r["vector"] for r in hist.values()], dtype=np.float32) if hist else None
        explore = EXPLORE_SLOTS if job.req.explore_slots is None else job.req.explore_slots  # per request
        user = self._user_features(job.req, hist)
        return RankInput(user_vector, user, cands, hist_vecs, job.req.k, job.req.diversity_lambda, explore)

    def _items(
        self, job: _Job, hits: list[Hit], rows: dict[int, dict[str, Any]], x: RankInput, order: list[int]
    ) -> list[RecommendedItem]:
        hist_ids = list(job.history_rows)
        return [
            RecommendedItem(
                product_id=hits[i].product_id,
                score=round(float(x.cands.ann[i]), 5),
                reason=self._reason(job.req, i, x.cands, hist_ids, x.history, job.history_rows, x.user),
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
