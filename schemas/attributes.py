"""Product attributes in the seed JSON shape: ``clothes`` (STD) + ``reinforced_feature_value`` (RE).

STD values come from a fixed vocabulary; RE values are free, detailed terms (LLM or rules
made) and may nest one level (``structural.geometry: {width_flow: ...}``). Both are
flattened to ``{"dotted.key": ["value", ...]}`` for the models.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from schemas.limits import MAX_ATTR_KEY_CHARS, MAX_ATTR_LIST, MAX_ATTR_NUMBER, MAX_ATTR_VALUE_CHARS, MAX_ATTRIBUTES

AttrKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTR_KEY_CHARS)]
AttrText = Annotated[str, StringConstraints(max_length=MAX_ATTR_VALUE_CHARS)]
# Numbers are bounded and strict: in lax mode a digit string over the text limit passed as
# an int of up to 4300 digits ("1e999" as inf), i.e. unbounded text once flattened.
AttrNumber = (
    Annotated[int, Field(strict=True, ge=-MAX_ATTR_NUMBER, le=MAX_ATTR_NUMBER)]
    | Annotated[float, Field(strict=True, ge=-MAX_ATTR_NUMBER, le=MAX_ATTR_NUMBER, allow_inf_nan=False)]
)
Scalar = AttrText | AttrNumber | StrictBool  # (bools were taken as ints before; still taken)
Leaf = Scalar | Annotated[list[Scalar], Field(max_length=MAX_ATTR_LIST)]
AttrValue = Leaf | Annotated[dict[AttrKey, Leaf], Field(max_length=MAX_ATTRIBUTES)]
FlatAttributes = dict[str, list[str]]

# Keys of the seed's own bookkeeping that carry no product information.
_IGNORED_KEYS = {"__description__"}
_KFASHION_CATEGORY = re.compile(r"^\d+(?:-\d+)?([a-z]+)(?:_\d+)?[_(]?([a-z\-]+)?\)?$")


def _leaf_values(value: Leaf, split_commas: bool) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        # STD values list several materials/colours comma-separated ("Cotton,Polyester").
        parts = text.split(",") if split_commas else [text]
        out.extend(p.strip() for p in parts if p.strip())
    return out


def flatten(attrs: dict[str, AttrValue], split_commas: bool) -> FlatAttributes:
    flat: FlatAttributes = {}
    for key, value in attrs.items():
        if key in _IGNORED_KEYS:
            continue
        if isinstance(value, dict):
            for sub, leaf in value.items():
                vals = _leaf_values(leaf, split_commas)
                if vals:
                    flat[f"{key}.{sub}"] = vals
        else:
            vals = _leaf_values(value, split_commas)
            if vals:
                flat[key] = vals
    return flat


def split_category(raw: str) -> tuple[str, str]:
    """``01outer_01coat`` -> (outer, coat); ``03-1onepiece(dress)`` -> (onepiece, dress);
    ``outer/coat`` or ``outer > coat`` -> (outer, coat); anything else -> (raw, raw)."""
    text = raw.strip().lower()
    match = _KFASHION_CATEGORY.match(text)
    if match and match.group(2):
        fine = match.group(2).removesuffix("e") if match.group(2) == "jumpsuite" else match.group(2)
        return match.group(1), fine
    for sep in (">", "/"):
        if sep in text:
            coarse, _, fine = text.partition(sep)
            return coarse.strip(), fine.strip()
    return text, text


class ProductAttributes(BaseModel):
    """The raw attribute block of a product, exactly in the seed's JSON shape."""

    model_config = ConfigDict(extra="ignore")

    clothes: Annotated[dict[AttrKey, AttrValue], Field(max_length=MAX_ATTRIBUTES)]
    reinforced_feature_value: Annotated[dict[AttrKey, AttrValue], Field(max_length=MAX_ATTRIBUTES)] | None = None

    @field_validator("clothes")
    @classmethod
    def _needs_category(cls, value: dict[str, AttrValue]) -> dict[str, AttrValue]:
        category = value.get("category")
        if not category or not _leaf_values(category, split_commas=False):  # type: ignore[arg-type]
            raise ValueError("clothes.category is required (e.g. '01outer_01coat')")
        return value

    def std(self) -> FlatAttributes:
        return flatten(self.clothes, split_commas=True)

    def re(self) -> FlatAttributes:
        return flatten(self.reinforced_feature_value or {}, split_commas=False)

    def category(self) -> tuple[str, str]:
        return split_category(self.std()["category"][0])
