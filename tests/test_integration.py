"""End to end on a real noida-db broker, a real embedded Milvus and the real worker."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest

from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient, RecommendTimeout
from consumers.vector_store import VectorStore
from schemas import topics
from schemas.events import DeadLetter, Interaction, ProductEnriched
from schemas.limits import MAX_TITLE_CHARS
from streams.sequences import UserSequence
from tests.factories import product
from tests.harness import Stack, read_topic

pytestmark = pytest.mark.integration


async def enriched(stack: Stack, ids: set[int], timeout_s: float = 60) -> dict[int, ProductEnriched]:
    """The latest ProductEnriched event of each id (waits until all are there)."""

    def have(records: list) -> bool:
        return ids <= {ProductEnriched.model_validate_json(r.value).product_id for r in records}

    recs = await read_topic(
        stack.settings, topics.PRODUCTS_ENRICHED.name, topics.PRODUCTS_ENRICHED.partitions, have, timeout_s
    )
    out: dict[int, ProductEnriched] = {}
    for r in recs:
        e = ProductEnriched.model_validate_json(r.value)
        if e.product_id in ids:
            out[e.product_id] = e
    return out


async def test_product_event_becomes_searchable_vector(
    stack: Stack, producer: TailorProducer, store: VectorStore
) -> None:
    await producer.publish_product(product(1001, "coat", "Beige", title="Beige Wool Relaxed Long Coat"))
    event = (await enriched(stack, {1001}))[1001]
    assert event.coarse == "outer" and event.fine == "coat"
    assert event.enricher == "rules" and event.re["fabric.feature"] == ["Wool_Normal"]
    row = store.get([1001])[1001]
    vec = np.array(row["vector"], dtype=np.float32)
    assert abs(np.linalg.norm(vec) - 1) < 1e-3
    hits = store.search(vec, 5)
    assert hits[0].product_id == 1001 and hits[0].score > 0.99
    assert row["coarse"] == "outer" and row["fine"] == "coat"
    # Filterable scalar fields.
    assert all(h.fine == "coat" for h in store.search(vec, 10, 'fine == "coat" and gender == "woman" and price <= 100'))


async def test_republished_product_is_upserted_not_duplicated(
    stack: Stack, producer: TailorProducer, store: VectorStore
) -> None:
    await producer.publish_product(product(1101, "dress", "Red", title="Red Midi Dress"))
    await enriched(stack, {1101})
    await producer.publish_product(product(1101, "dress", "Red", title="Red Midi Wrap Dress"))
    await producer.publish_product(product(1101, "dress", "Red", title="Red Midi Wrap Dress v3"))

    async def title() -> str | None:
        # None = not visible to this client yet: another client's write reaches a Session
        # read a little later, and an upsert is a delete plus an insert (seen once in CI).
        row = store.get([1101], with_vectors=False).get(1101)
        return row["title"] if row else None

    deadline = time.monotonic() + 30
    while await title() != "Red Midi Wrap Dress v3":
        assert time.monotonic() < deadline, "upsert not visible"
        await asyncio.sleep(0.2)
    rows = store.client.query(
        store.collection, filter="product_id == 1101", output_fields=["product_id"], consistency_level="Strong"
    )
    assert len(rows) == 1


async def _sequence_of(stack: Stack, user_id: str, expect_len: int, last: int | None = None) -> list[int]:
    """The durable table state: the last changelog record of the user, once it holds
    ``expect_len`` items (ending with ``last``, when given: later clicks may still come)."""

    def latest(records: list) -> list[int]:
        mine = [r for r in records if json.loads(r.key) == user_id]
        return UserSequence.model_validate(json.loads(mine[-1].value)).product_ids() if mine else []

    def done(records: list) -> bool:
        items = latest(records)
        return len(items) >= expect_len and (last is None or items[-1] == last)

    changelog = topics.changelog_topic(stack.settings.app_id)
    return latest(await read_topic(stack.settings, changelog.name, changelog.partitions, done))


async def test_clicks_update_the_sequence_table_and_survive_restart(stack: Stack, producer: TailorProducer) -> None:
    for pid in (2001, 2002, 2003):
        await producer.publish_product(product(pid, "t-shirt", "White"))
    await enriched(stack, {2001, 2002, 2003})
    clicks = [Interaction(event_id=f"c-{i}", user_id="u-seq", product_id=p) for i, p in enumerate((2001, 2002, 2003))]
    for c in clicks:
        await producer.publish_interaction(c)
    await producer.publish_interaction(clicks[0])  # a replay changes nothing
    assert await _sequence_of(stack, "u-seq", 3) == [2001, 2002, 2003]

    await stack.restart()
    async with RecommendClient(stack.settings, timeout_s=15) as client:
        reply = await client.recommend("u-seq", k=5)
    assert reply.strategy == "sequence"  # the table came back from its changelog
    assert not {2001, 2002, 2003} & {i.product_id for i in reply.items}  # seen items excluded
    await producer.publish_interaction(Interaction(event_id="c-9", user_id="u-seq", product_id=2001, kind="purchase"))
    assert await _sequence_of(stack, "u-seq", 4) == [2001, 2002, 2003, 2001]


async def test_sequence_keeps_the_last_50(stack: Stack, producer: TailorProducer) -> None:
    for i in range(55):
        await producer.publish_interaction(Interaction(user_id="u-long", product_id=3000 + i))
    seq = await _sequence_of(stack, "u-long", 50, last=3054)
    assert len(seq) == 50 and seq[-1] == 3054 and seq[0] == 3005


async def test_request_reply_round_trip_correlates_concurrent_requests(
    stack: Stack, producer: TailorProducer, client: RecommendClient
) -> None:
    for pid, fine in ((4001, "pants"), (4002, "pants"), (4003, "skirt")):
        await producer.publish_product(product(pid, fine, "Blue"))
    await enriched(stack, {4001, 4002, 4003})
    replies = await asyncio.gather(*(client.recommend(f"u-rr-{i}", k=3, context="blue pants") for i in range(10)))
    assert [r.user_id for r in replies] == [f"u-rr-{i}" for i in range(10)]
    assert len({r.request_id for r in replies}) == 10
    for r in replies:
        assert r.strategy == "context" and r.error is None
        assert 1 <= len(r.items) <= 3 and r.model_version
        assert {"ann_ms", "total_ms"} <= r.timings_ms.keys()
    filtered = await client.recommend("u-rr-f", k=5, context="blue pants", filters={"fine": "skirt"})
    assert [i.product_id for i in filtered.items] == [4003]


async def test_brand_new_product_is_recommended_to_a_similar_user(
    stack: Stack, producer: TailorProducer, client: RecommendClient
) -> None:
    # A small catalog: coats and dresses; the user clicks coats only.
    for i in range(8):
        await producer.publish_product(
            product(5000 + i, "coat", ["Black", "Gray", "Beige", "Brown"][i % 4], season="winter")
        )
        await producer.publish_product(
            product(5100 + i, "dress", ["Red", "Pink", "White", "Yellow"][i % 4], season="summer")
        )
    await enriched(stack, {5000 + i for i in range(8)} | {5100 + i for i in range(8)})
    for i in range(6):
        await producer.publish_interaction(Interaction(user_id="u-cold", product_id=5000 + i))
    deadline = time.monotonic() + 30
    while (await client.recommend("u-cold", k=1)).strategy != "sequence":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    t0 = time.monotonic()
    await producer.publish_product(product(5999, "coat", "Black", title="New Black Wool Winter Coat", season="winter"))
    while True:
        reply = await client.recommend("u-cold", k=5)
        if 5999 in [i.product_id for i in reply.items]:
            break
        assert time.monotonic() - t0 < 30, f"cold-start item never recommended: {reply.items}"
        await asyncio.sleep(0.05)
    item = next(i for i in reply.items if i.product_id == 5999)
    assert "you viewed" in item.reason


async def test_bad_events_go_to_the_dead_letter_topic_and_nothing_good_is_lost(
    stack: Stack, producer: TailorProducer, client: RecommendClient
) -> None:
    good_before = product(6001, "skirt", "Green")
    bad = [
        (topics.PRODUCTS_CREATED.name, b"6002", b"{not json", "invalid_json"),
        (
            topics.PRODUCTS_CREATED.name,
            b"6003",
            json.dumps({"product_id": 6003, "title": "no attributes"}).encode(),
            "schema",
        ),
        (
            topics.PRODUCTS_CREATED.name,
            b"6004",
            product(6004)
            .model_dump_json()
            .replace('"title":"Black coat 6004"', '"title":"' + "x" * (MAX_TITLE_CHARS + 1) + '"')
            .encode(),
            "schema",
        ),
        (topics.PRODUCTS_CREATED.name, b"6005", b"{" + b" " * 300_000 + b"}", "too_large"),
        (topics.INTERACTIONS.name, b"u-bad", json.dumps({"user_id": "u-bad", "product_id": -5}).encode(), "schema"),
        (
            topics.INTERACTIONS.name,
            b"someone-else",
            Interaction(user_id="u-bad", product_id=1).model_dump_json().encode(),
            "bad_key",
        ),
        (
            topics.RECOMMEND_REQUESTS.name,
            b"u-bad",
            json.dumps({"request_id": "r-bad", "user_id": "u-bad", "k": 100000}).encode(),
            "schema",
        ),
    ]
    await producer.publish_product(good_before)
    for topic, key, value, _ in bad:
        await producer.send_raw(topic, key, value)
    await producer.publish_product(product(6009, "skirt", "Green"))

    def all_there(records: list) -> bool:
        payloads = {base64.b64decode(DeadLetter.model_validate_json(r.value).payload_b64) for r in records}
        return all(v in payloads for _, _, v, _ in bad)

    recs = await read_topic(stack.settings, topics.DEADLETTER.name, topics.DEADLETTER.partitions, all_there)
    letters = {base64.b64decode(d.payload_b64): d for d in (DeadLetter.model_validate_json(r.value) for r in recs)}
    for topic, _, value, error in bad:
        letter = letters[value]
        assert letter.source_topic == topic and letter.error == error and letter.detail
        assert letter.offset is not None and letter.partition is not None
    assert "k" in letters[bad[-1][2]].detail
    # The worker kept going: good events on both sides of the bad ones are indexed, and it answers.
    assert {6001, 6009} <= (await enriched(stack, {6001, 6009})).keys()
    assert (await client.recommend("u-after-bad", k=2, context="green skirt")).error is None


async def test_invalid_request_with_an_id_gets_an_error_reply(
    stack: Stack, client: RecommendClient, producer: TailorProducer
) -> None:
    fut = asyncio.get_running_loop().create_future()
    client._pending["r-invalid"] = fut  # noqa: SLF001 - listen for a request we craft by hand
    await producer.send_raw(
        topics.RECOMMEND_REQUESTS.name,
        b"u-x",
        json.dumps({"request_id": "r-invalid", "user_id": "u-x", "k": 0}).encode(),
    )
    reply = await asyncio.wait_for(fut, 15)
    assert reply.strategy == "error" and "invalid request" in (reply.error or "")


async def test_new_re_terms_get_ids_that_survive_a_restart(stack: Stack, producer: TailorProducer) -> None:
    term = {"fabric.feature": "Gorpcore_Ripstop_Technical"}
    await producer.publish_product(product(7001, "jacket", "Green", re=term))
    first = (await enriched(stack, {7001}))[7001]
    assert first.new_re_terms == ["fabric.feature=gorpcore_ripstop_technical"]
    vocab_file = stack.settings.vocab_file(first.model_version)
    assert "gorpcore_ripstop_technical" in vocab_file.read_text()

    await stack.restart()
    await producer.publish_product(product(7002, "jacket", "Green", re=term))
    second = (await enriched(stack, {7002}))[7002]
    assert second.new_re_terms == []  # known after the restart: same id, no growth


async def test_request_times_out_with_a_clear_error_when_no_worker_answers(stack: Stack) -> None:
    await asyncio.to_thread(stack.stop_worker)
    try:
        async with RecommendClient(stack.settings, timeout_s=1.0) as client:
            with pytest.raises(RecommendTimeout, match="no reply to recommendation request"):
                await client.recommend("u-nobody", k=3)
    finally:
        stack.spawn_worker()
        await stack.wait_ready()


async def test_llm_outage_embeds_from_rules_at_once_and_reenriches_when_it_answers(
    stack: Stack, producer: TailorProducer, store: VectorStore
) -> None:
    from aiohttp import web

    from tests.test_enrich_openai import GOOD_FLAT, FakeLLM, good

    async def down(_: web.Request) -> web.Response:
        return web.Response(status=500, text="model server down")

    llm = FakeLLM()
    llm.script = [down]
    await llm.start()
    try:
        await stack.restart(
            TAILOR_ENRICHER="openai",
            TAILOR_OPENAI_BASE_URL=f"http://127.0.0.1:{llm.port}/v1",
            TAILOR_OPENAI_TIMEOUT_S="2",
            TAILOR_REENRICH_BACKOFF_S="0.3",
            TAILOR_REENRICH_MAX_BACKOFF_S="1",
        )
        await producer.publish_product(product(8001, "coat", "Beige", title="Beige Wool Relaxed Long Coat"))
        first = (await enriched(stack, {8001}))[8001]
        # Embedded at once from the rules fallback, with the reason, and marked for a retry.
        assert first.enricher == "rules" and first.reenrich_pending
        assert any("openai failed" in n for n in first.enrichment_notes)
        before = np.array(store.get([8001])[8001]["vector"])

        llm.script = [good]  # the LLM comes back

        def llm_answer(records: list) -> bool:
            events = [ProductEnriched.model_validate_json(r.value) for r in records]
            return any(e.product_id == 8001 and e.enricher == "openai" for e in events)

        recs = await read_topic(
            stack.settings, topics.PRODUCTS_ENRICHED.name, topics.PRODUCTS_ENRICHED.partitions, llm_answer, 60
        )
        second = [e for e in (ProductEnriched.model_validate_json(r.value) for r in recs) if e.product_id == 8001][-1]
        assert second.enricher == "openai" and second.re == GOOD_FLAT and not second.reenrich_pending
        after = np.array(store.get([8001])[8001]["vector"])
        assert not np.allclose(before, after)  # re-embedded from the LLM's attributes
        rows = store.client.query(
            store.collection, filter="product_id == 8001", output_fields=["product_id"], consistency_level="Strong"
        )
        assert len(rows) == 1  # same pk: upserted, not duplicated
    finally:
        await llm.stop()
        await stack.restart()
