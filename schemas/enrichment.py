"""What an LLM enricher must answer: the RE block in the seed's shape (``fit.vibe``,
``silhouette.shape``, ``structural.geometry.width_flow`` ...), every value a short string or null.

The same model gives the JSON Schema sent as ``response_format`` (so constrained decoders
can only produce what validates here) and validates whatever comes back.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.attributes import FlatAttributes, flatten
from schemas.limits import MAX_ATTR_VALUE_CHARS

RE_SCHEMA_NAME = "tailor_re_attributes"
ReText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_ATTR_VALUE_CHARS)]
_SHORT = f"at most {MAX_ATTR_VALUE_CHARS} characters; null when unknown"


def _field(alias: str | None, hint: str) -> Any:
    return Field(default=None, alias=alias, description=f"{hint} ({_SHORT})")


class StructuralGeometry(BaseModel):
    """Garment geometry read from measurement ratios. Tops/outer/dresses use the first five
    keys, bottoms the last four; the seed leaves the others out."""

    model_config = ConfigDict(extra="forbid")

    width_flow: ReText | None = _field(None, "hem vs chest: Expanding, Straight or Tapered")
    waist_contour: ReText | None = _field(None, "waist vs chest: Tubular, Barrel or Hourglass")
    vertical_balance: ReText | None = _field(None, "length tier, e.g. Micro Crop, Semi-Crop, Standard, Tunic, Long")
    shoulder_geometry: ReText | None = _field(None, "Narrow, Standard or Wide/Drop")
    sleeve_profile: ReText | None = _field(None, "Sleeveless, Narrow, Tapered, Standard or Wide/Bell")
    rise_profile: ReText | None = _field(None, "bottoms: Low Rise, Mid-Rise, High-Rise or None(Dress/Skirt)")
    hip_to_hem_flow: ReText | None = _field(None, "bottoms: Tapered, Straight, A-line/Wide or Flare")
    waist_type: ReText | None = _field(None, "bottoms: Structured or Elastic/Banded")
    volumetric_fit: ReText | None = _field(None, "bottoms: Tight, Regular or Loose")


class ReAnswer(BaseModel):
    """One product's RE attributes as an LLM answers them (dotted keys as in the seed JSON)."""

    # extra="forbid" mirrors additionalProperties=false: an answer with unknown keys is a
    # schema violation (repaired once), not silently trimmed.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    category: ReText | None = _field(None, "descriptive snake_case category, e.g. long_boxy_coat")
    season: ReText | None = _field(None, "e.g. Spring/Autumn, Early Summer, Summer, Winter, Deep Winter")
    color: ReText | None = _field(None, "main colour, e.g. Charcoal")
    fit_vibe: ReText | None = _field("fit.vibe", "e.g. Relaxed, Standard, Slim-fit, Oversized, Voluminous, Bodycon")
    silhouette_shape: ReText | None = _field("silhouette.shape", "e.g. H-line / Straight, A-line / Trapeze, Boxy")
    length_feeling: ReText | None = _field("length.feeling", "e.g. Semi-Crop, Standard, Tunic, Long, Midi")
    fabric_feature: ReText | None = _field("fabric.feature", "<Fibre>_<Weight>, e.g. Wool_Thick, Cotton_Lightweight")
    structural_geometry: StructuralGeometry | None = Field(
        default=None, alias="structural.geometry", description="geometry from measurements; null without them"
    )

    def flat(self) -> FlatAttributes:
        """The answer as ``ProductAttributes.re()`` would flatten the same block."""
        return flatten(self.model_dump(by_alias=True, exclude_none=True), split_commas=False)


# Keywords OpenAI's strict mode rejects or ignores; pydantic still enforces them on the answer.
_UNSUPPORTED_IN_STRICT = {"default", "maxLength"}


def _strict(node: Any) -> Any:
    """OpenAI strict mode: every object closed, every property listed in ``required``
    (optional = nullable, which the pydantic schema already says via anyOf null)."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k not in _UNSUPPORTED_IN_STRICT | {"properties", "$defs"}}
    for mapping in ("properties", "$defs"):  # names here are keys, not keywords: keep them all
        if mapping in node:
            out[mapping] = {name: _strict(sub) for name, sub in node[mapping].items()}
    if "properties" in node:
        out["required"] = list(node["properties"])
        out["additionalProperties"] = False
    return out


def re_json_schema() -> dict[str, Any]:
    return _strict(ReAnswer.model_json_schema(by_alias=True))


def re_response_format(name: str = RE_SCHEMA_NAME) -> dict[str, Any]:
    """The chat-completions ``response_format`` asking for a schema-constrained answer."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": re_json_schema(), "strict": True}}
