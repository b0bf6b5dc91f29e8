"""Units of the stream side that need no broker: decoding, dead letters, sequences, rules."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

from consumers.enrichment import RulesEnricher
from consumers.enrichment.rules import text_to_std
from consumers.vector_store import Hit, filter_expr
from schemas.events import DeadLetter, Filters, Interaction, ProductCreated, ProductEnriched
from schemas.limits import MAX_MESSAGE_BYTES
from streams.catalog import load_catalog
from streams.deadletter import decode
from streams.products import features_json, from_row, item_row, row_item
from streams.sequences import Popularity, UserSequence
from streams.serving import context_item, merge_hits
from tests.factories import product


def test_decode_good_and_bad() -> None:
    good = product(1).model_dump_json().encode()
    assert isinstance(decode(good, ProductCreated, "t"), ProductCreated)
    cases = {
        b"": "empty",
        b"{oops": "invalid_json",
        b"\xff\xfe": "invalid_json",
        b"[1,2]": "schema",
        b'{"product_id": "x"}': "schema",
        b" " * (MAX_MESSAGE_BYTES + 1): "too_large",
    }
    for raw, error in cases.items():
        letter = decode(raw, ProductCreated, "topic-a", 2, 17, b"key")
        assert isinstance(letter, DeadLetter) and letter.error == error, raw[:20]
        assert base64.b64decode(letter.payload_b64) == raw and letter.offset == 17 and letter.key == "key"


def test_sequence_dedupes_orders_and_bounds() -> None:
    seq = UserSequence()
    t = datetime.now(UTC)
    late = Interaction(event_id="b", user_id="u", product_id=2, ts=t)
    early = Interaction(event_id="a", user_id="u", product_id=1, ts=t - timedelta(minutes=1))
    assert seq.add(late, 50) and seq.add(early, 50) and not seq.add(late, 50)
    assert seq.product_ids() == [1, 2]
    for i in range(10):
        seq.add(Interaction(event_id=f"e{i}", user_id="u", product_id=10 + i, ts=t + timedelta(seconds=i)), 5)
    assert seq.product_ids() == [15, 16, 17, 18, 19]


def test_sequence_table_values_are_compact_and_older_values_still_load() -> None:
    t = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    seq = UserSequence()
    for i in range(20):
        seq.add(Interaction(event_id=uuid.uuid4().hex, user_id="u", product_id=100_000 + i, ts=t, kind="cart"), 50)
    stored = json.loads(json.dumps(seq.model_dump(mode="json")))  # as the changelog carries it
    assert stored["v"] == 2 and UserSequence.model_validate(stored) == seq == UserSequence.from_table(stored)
    v1 = {
        "items": [
            {"product_id": 5, "kind": "purchase", "ts": "2026-12-01T12:00:00.000001+00:00", "event_id": "e-1"},
            {"product_id": 6, "kind": "click", "ts": "2026-12-01T12:00:01", "event_id": "e-2"},  # naive = UTC
        ]
    }
    old = UserSequence.from_table(v1)
    assert old.product_ids() == [5, 6] and old.items[0].kind == "purchase"
    replay = Interaction(event_id="e-1", user_id="u", product_id=5, ts=t)
    assert not old.add(replay, 50)  # applied before the format changed: still a replay
    assert old.add(Interaction(event_id="e-3", user_id="u", product_id=7, ts=datetime(2026, 12, 1, 12, 0, 2)), 50)
    assert UserSequence.from_table(json.loads(json.dumps(old.model_dump(mode="json")))) == old
    v1_size = len(json.dumps({"items": [it.model_dump(mode="json") for it in seq.items]}))
    assert len(json.dumps(stored)) * 2 < v1_size  # at least 2x smaller than the field-named form


def test_popularity_counts_after_rebuild() -> None:
    pop = Popularity()
    pop.add(1)  # ignored until built from the table
    seq = UserSequence()
    seq.add(Interaction(user_id="u", product_id=7), 50)
    pop.rebuild([seq, seq])
    pop.add(8)
    assert pop.top(5, exclude=set()) == [(7, 2), (8, 1)]
    assert pop.top(5, exclude={7}) == [(8, 1)]


def test_stored_features_stay_valid_json_within_the_varchar() -> None:
    std = {"color": ["Black"], "category": ["01outer_01coat"]}
    re = {"fabric.feature": [f"кашемир_{i}" * 8 for i in range(400)], "fit.vibe": ["relaxed"]}
    text = features_json(std, re, limit=4000)
    kept = json.loads(text)  # valid JSON, not cut mid-way
    assert len(text.encode()) <= 4000 and kept["std"] == std and kept["re"]["fit.vibe"] == ["relaxed"]
    assert 0 < len(kept["re"]["fabric.feature"]) < 400
    assert re["fabric.feature"][0] == kept["re"]["fabric.feature"][0]  # the first values are kept
    assert features_json(std, {"fit.vibe": ["relaxed"]}) == json.dumps({"std": std, "re": {"fit.vibe": ["relaxed"]}})


def test_row_item_reads_a_stored_row_as_from_row_does() -> None:
    enriched = ProductEnriched(
        product_id=7,
        title="Black wool coat",
        std={"category": ["01outer_01coat"], "color": ["black"]},
        re={"fabric.material": ["wool"], "fit.vibe": ["relaxed", "boxy"]},
        coarse="outer",
        fine="coat",
        price=99.0,
        enricher="rules",
    )
    bare = {"product_id": 8, "title": "", "coarse": "top", "fine": "knit", "price": 0.0, "features": ""}
    for row in (item_row(enriched, [0.0] * 128).model_dump(), bare):
        full, light = from_row(row), row_item(row)
        for field in ("title", "std", "re", "coarse", "fine"):
            assert getattr(light, field) == getattr(full, field)


def test_popularity_ranking_is_reused_for_refresh_s() -> None:
    now = [0.0]
    pop = Popularity(refresh_s=1.0, clock=lambda: now[0])
    pop.rebuild([])
    pop.add(1)
    assert pop.top(2, exclude=set()) == [(1, 1)]
    pop.add(2)
    pop.add(2)
    assert pop.top(2, exclude=set()) == [(1, 1)]  # ranked less than refresh_s ago
    now[0] = 1.5
    assert pop.top(2, exclude=set()) == [(2, 2), (1, 1)]


def test_rules_enricher_reads_text_and_std() -> None:
    p = product(1, "pants", "Blue", title="Blue High-Rise Wide-Leg Denim Jeans", pants_silhouette="wide")
    found = asyncio.run(RulesEnricher().enrich(p))
    assert found.re["silhouette.shape"] == ["A-line / Wide"] and found.re["fabric.feature"] == ["Denim_Normal"]
    assert found.re["category"] == ["relaxed_denim_pants"] and found.backend == "rules"
    assert text_to_std("black wool coat for women in winter") == {
        "category": ["01outer_01coat"],
        "color": ["Black"],
        "gender": ["woman"],
        "season": ["winter"],
    }
    assert "men" not in text_to_std("women").get("gender", [""])[0].replace("woman", "")


def test_context_text_becomes_a_pseudo_item() -> None:
    item = context_item("navy linen shirt for summer")
    assert item.fine == "shirt" and item.std["color"] == ["Navy"] and item.re["fabric.feature"] == ["Linen_Normal"]
    assert context_item("something vague").fine == "unknown"


def test_filter_expression_quotes_and_excludes() -> None:
    expr = filter_expr(Filters(fine='co"at', gender="Woman", price_max=100), [3, 1])
    assert expr == 'fine == "co\\"at" and gender == "woman" and price <= 100.0 and product_id not in [3, 1]'
    assert filter_expr(None) == ""


def test_merge_keeps_best_score_per_item() -> None:
    a = [Hit(product_id=1, score=0.5), Hit(product_id=2, score=0.4)]
    b = [Hit(product_id=1, score=0.9), Hit(product_id=3, score=0.1)]
    assert [(h.product_id, h.score) for h in merge_hits([a, b], 2)] == [(1, 0.9), (2, 0.4)]


def test_sample_catalog_is_valid_and_realistic() -> None:
    products = list(load_catalog())
    assert len(products) == 200 and len({p.product_id for p in products}) == 200
    assert len({p.attributes.category() for p in products}) == 13
    with_re = sum(1 for p in products if p.attributes.re())
    assert 0.5 < with_re / 200 < 0.9


def test_rebalance_end_stops_the_flow_before_faust_resumes_and_seeks() -> None:
    """streams.app patches faust's Recovery: at the end of a rebalance the flow is stopped
    before faust resumes the stream partitions and seeks them to the committed offsets, so
    no record fetched during the seek reaches an agent's queue (see the patch's docstring)."""
    from types import SimpleNamespace
    from unittest.mock import MagicMock

    from faust.tables.recovery import Recovery

    import streams.app  # noqa: F401 - installs the patch

    for name in ("on_recovery_completed", "_resume_streams"):
        patched = getattr(Recovery, name)
        assert getattr(patched, "tailor_patched", False), name
        app = SimpleNamespace(consumer=MagicMock(), flow_control=MagicMock())
        seen: list[tuple[bool, bool, int]] = []

        async def original(self: object, generation_id: int, app: SimpleNamespace = app, seen: list = seen) -> None:
            seen.append((app.consumer.stop_flow.called, app.flow_control.suspend.called, generation_id))

        asyncio.run(patched(SimpleNamespace(app=app), 7, _original=original))
        assert seen == [(True, True, 7)], name


def test_worker_freezes_its_startup_heap() -> None:
    import gc

    from streams.worker import freeze_startup_heap

    try:
        assert freeze_startup_heap() > 0 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
