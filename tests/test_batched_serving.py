"""Micro-batched request answering (``streams.batching`` + ``Recommender.answer_many``)
against a real embedded Milvus: the replies to requests answered together are the replies
each gets alone (seen items excluded, filters applied, every strategy), and concurrent
``answer`` calls are batched without mixing up their replies."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from consumers.vector_store import VectorStore
from models.cooccurrence import CoOccurrence
from models.diversity import SelfAttentionReranker
from models.ranking import RankingModels
from models.reranker import DeepFMReranker, RerankerConfig
from models.sasrec import SASRec, SASRecConfig
from models.user_tower import UserState, UserTower, UserTowerConfig
from schemas.events import Filters, Interaction, Profile, RecommendReply, RecommendRequest
from streams.products import item_row
from streams.sequences import Popularity, UserSequence
from streams.serving import Recommender
from tests.harness import Stack
from tests.test_ranking_models import catalog_items, encoder

pytestmark = pytest.mark.integration

Pair = tuple[RecommendRequest, UserSequence | None]


def _sequence(user: str, ids: list[int]) -> UserSequence:
    seq = UserSequence()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for t, pid in enumerate(ids):
        seq.add(Interaction(event_id=f"{user}-{t}", user_id=user, product_id=pid, ts=start + timedelta(hours=t)), 50)
    return seq


def _ranking(enc_std: int, enc_re: int, seqs: dict[str, list[int]]) -> RankingModels:
    torch.manual_seed(0)  # untrained weights: the equality holds for any weights
    return RankingModels(
        # eval() as ``models.registry`` loads it: a tower in training mode is switched to
        # eval and back by each ``encode``, which two batches in flight would race on.
        user_tower=UserTower(UserTowerConfig()).eval(),
        deepfm=DeepFMReranker(RerankerConfig(std_size=enc_std, re_size=enc_re, cooc=True, sequence=True)),
        diversity=SelfAttentionReranker(),
        cooccurrence=CoOccurrence.fit(seqs),
        # Untrained; two of the logged items without a row, so known and unknown both occur.
        sasrec=SASRec(SASRecConfig(dim=16, max_len=8), sorted({p for h in seqs.values() for p in h})[2:]),
    )


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, list[Pair]]:
    tmp: Path = tmp_path_factory.mktemp("batched")
    enc = encoder(tmp)
    items = catalog_items(12)
    vectors = enc.encode_growing(items)
    store = VectorStore(stack.settings.milvus, "test_batched_serving", consistency="Strong")
    store.ensure_collection()
    store.upsert([item_row(it, [float(v) for v in vec]) for it, vec in zip(items, vectors, strict=True)])
    ids = [it.product_id for it in items]
    rng = random.Random(3)
    histories = {f"b{u}": rng.sample(ids, rng.randint(3, 12)) for u in range(8)}
    popularity = Popularity()
    popularity.rebuild(_sequence(u, h) for u, h in histories.items())
    ranking = _ranking(len(enc.std_vocab), enc.tower.re_emb.num_embeddings, histories)
    rec = Recommender(store, enc, popularity, 40, ranking, batch=16, batches_in_flight=2)
    seq = {u: _sequence(u, h) for u, h in histories.items()}
    pairs: list[Pair] = [
        (RecommendRequest(user_id="b0", k=10), seq["b0"]),
        (RecommendRequest(user_id="b1", k=5, diversity_lambda=0.5), seq["b1"]),
        (RecommendRequest(user_id="b2", k=10, exclude_seen=False), seq["b2"]),
        (RecommendRequest(user_id="b3", k=10, filters=Filters(coarse="top")), seq["b3"]),
        (RecommendRequest(user_id="b4", k=10, context="black wool coat", profile=Profile(height_cm=170)), seq["b4"]),
        (RecommendRequest(user_id="new", k=10, context="navy linen shirt"), None),  # context only
        (RecommendRequest(user_id="nobody", k=10), None),  # popular
        (RecommendRequest(user_id="b5", k=10, explore_slots=0), seq["b5"]),
        (RecommendRequest(user_id="b6", k=8, filters=Filters(fine="skirt")), seq["b6"]),
    ]
    return rec, pairs


def _ids(reply: RecommendReply) -> list[int]:
    return [it.product_id for it in reply.items]


async def test_a_batch_answers_each_request_as_it_would_be_answered_alone(
    served: tuple[Recommender, list[Pair]],
) -> None:
    rec, pairs = served
    alone = [(await rec.answer_many([pair]))[0] for pair in pairs]
    together = await rec.answer_many(pairs)
    assert [r.request_id for r in together] == [req.request_id for req, _ in pairs]
    assert [r.strategy for r in alone] == ["sequence"] * 5 + ["context", "popular", "sequence", "sequence"]
    for one, both, (req, seq) in zip(alone, together, pairs, strict=True):
        assert _ids(both) == _ids(one), req.user_id
        assert [it.score for it in both.items] == pytest.approx([it.score for it in one.items], abs=1e-4)
        assert [it.reason for it in both.items] == [it.reason for it in one.items]
        assert both.strategy == one.strategy and 0 < len(both.items) <= req.k
        if req.exclude_seen and seq is not None:
            assert not set(_ids(both)) & set(seq.product_ids()), req.user_id
    assert {it.fine for it in together[8].items} == {"skirt"}
    assert {it.product_id // 100 for it in together[3].items} <= {2, 3}  # coarse "top": knit, shirt
    stages = {"queue_ms", "user_tower_ms", "ann_ms", "deepfm_ms", "diversity_ms", "total_ms"}
    assert stages <= set(together[0].timings_ms)


async def test_concurrent_requests_are_batched_and_each_gets_its_own_reply(
    served: tuple[Recommender, list[Pair]],
) -> None:
    rec, pairs = served
    sizes: list[int] = []
    batcher = rec._batcher  # noqa: SLF001 - observe the batch sizes of this test
    batcher._on_batch = sizes.append  # noqa: SLF001
    expected = {r.request_id: _ids(r) for r in await rec.answer_many(pairs)}
    many = [pairs[i % len(pairs)] for i in range(40)]
    many = [(req.model_copy(update={"request_id": f"c{i}"}), seq) for i, (req, seq) in enumerate(many)]
    replies = await asyncio.gather(*(rec.answer(req, seq) for req, seq in many))
    assert [r.request_id for r in replies] == [req.request_id for req, _ in many]
    for i, reply in enumerate(replies):
        assert _ids(reply) == expected[pairs[i % len(pairs)][0].request_id]
    # Two batches start at once (one request each), the rest wait and go together.
    assert sizes[:2] == [1, 1] and sum(sizes) == 40 and max(sizes) == 16 and len(sizes) < 10
    assert max(r.timings_ms["queue_ms"] for r in replies) > 0


def test_the_user_towers_padded_batch_gives_each_user_its_own_vector(served: tuple[Recommender, list[Pair]]) -> None:
    tower = served[0].ranking.user_tower
    assert tower is not None
    rng = np.random.default_rng(0)
    states = [
        UserState(
            vectors=rng.normal(size=(n, 128)).astype(np.float32),
            kinds=["click"] * n,
            hours_ago=[float(h) for h in range(n)],
            context=None,
            profile=None,
        )
        for n in (1, 4, 30, 45)
    ]
    together = tower.encode(states)
    for i, state in enumerate(states):
        np.testing.assert_allclose(together[i], tower.encode([state])[0], atol=1e-5)
