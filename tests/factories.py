"""Small fixtures the tests make themselves (no shared data needed)."""

from __future__ import annotations

from typing import Any

from schemas.events import ProductCreated

FINE_TO_CODE = {
    "coat": "01outer_01coat",
    "jacket": "01outer_02jacket",
    "t-shirt": "02top_02t-shirt",
    "dress": "03-1onepiece(dress)",
    "pants": "04bottom_01pants",
    "skirt": "04bottom_02skirt",
}


def product(
    pid: int,
    fine: str = "coat",
    colour: str = "Black",
    title: str | None = None,
    re: dict[str, Any] | None = None,
    gender: str = "woman",
    price: float = 99.0,
    **clothes: str,
) -> ProductCreated:
    return ProductCreated(
        product_id=pid,
        title=title or f"{colour} {fine} {pid}",
        description=f"A {colour.lower()} {fine} in a relaxed fit.",
        price=price,
        attributes={
            "clothes": {"category": FINE_TO_CODE[fine], "color": colour, "gender": gender, **clothes},
            "reinforced_feature_value": re,
        },
    )
