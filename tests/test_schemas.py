from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.attributes import split_category
from schemas.events import Interaction, ProductCreated, RecommendRequest
from schemas.limits import MAX_CONTEXT_CHARS, MAX_K, MAX_TITLE_CHARS
from tests.factories import product


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01outer_01coat", ("outer", "coat")),
        ("02top_02t-shirt", ("top", "t-shirt")),
        ("03-1onepiece(dress)", ("onepiece", "dress")),
        ("03-2onepiece(jumpsuite)", ("onepiece", "jumpsuit")),
        ("04bottom_02skirt", ("bottom", "skirt")),
        ("Garment Upper body/Sweater", ("garment upper body", "sweater")),
        ("Accessories > Bag", ("accessories", "bag")),
        ("socks", ("socks", "socks")),
    ],
)
def test_category_hierarchy(raw: str, expected: tuple[str, str]) -> None:
    assert split_category(raw) == expected


def test_seed_shape_flattens_std_and_nested_re() -> None:
    p = ProductCreated(
        product_id=1,
        title="t",
        attributes={
            "clothes": {
                "__description__": "x",
                "category": "01outer_01coat",
                "color": "Black,White",
                "season": ["winter"],
            },
            "reinforced_feature_value": {"fit.vibe": "Relaxed", "structural.geometry": {"width_flow": "Straight"}},
        },
    )
    assert p.attributes.std() == {"category": ["01outer_01coat"], "color": ["Black", "White"], "season": ["winter"]}
    assert p.attributes.re() == {"fit.vibe": ["Relaxed"], "structural.geometry.width_flow": ["Straight"]}


def test_product_needs_a_category() -> None:
    with pytest.raises(ValidationError, match="clothes.category is required"):
        ProductCreated(product_id=1, title="t", attributes={"clothes": {"color": "Black"}})


@pytest.mark.parametrize(
    "change",
    [
        {"title": "x" * (MAX_TITLE_CHARS + 1)},
        {"title": ""},
        {"product_id": -1},
        {"price": -3},
        {"attributes": {"clothes": {"category": "01outer_01coat", "color": "y" * 500}}},
    ],
)
def test_product_limits(change: dict) -> None:
    data = json.loads(product(1).model_dump_json()) | change
    with pytest.raises(ValidationError):
        ProductCreated.model_validate(data)


def test_request_limits_and_defaults() -> None:
    req = RecommendRequest(user_id="u1")
    assert req.k == 10 and req.exclude_seen and req.request_id
    for bad in (
        {"k": 0},
        {"k": MAX_K + 1},
        {"context": "c" * (MAX_CONTEXT_CHARS + 1)},
        {"user_id": ""},
        {"profile": {"height_cm": 900}},
        {"filters": {"colour": "red"}},
    ):
        with pytest.raises(ValidationError):
            RecommendRequest.model_validate({"user_id": "u1"} | bad)


def test_events_round_trip_and_carry_envelope() -> None:
    event = Interaction(user_id="u", product_id=3, kind="cart")
    again = Interaction.model_validate_json(event.model_dump_json())
    assert again == event and again.event_id and again.schema_version == 1
    with pytest.raises(ValidationError):
        Interaction(user_id="u", product_id=3, kind="like")


def test_topics_share_partitions_with_the_table() -> None:
    assert (
        topics.INTERACTIONS.partitions == topics.RECOMMEND_REQUESTS.partitions == topics.changelog_topic("a").partitions
    )
    assert len({t.name for t in topics.ALL_TOPICS}) == len(topics.ALL_TOPICS)
