"""Measurement-ratio rules: garment measurements (the STD ``top.*``, ``pants.*``, ``skirt.*``,
``dress.*``, ``jumpsuit.*`` numbers, in cm) -> the seed's ``structural.geometry.*`` values plus
``length.feeling``, ``silhouette.shape`` and ``fit.vibe``, in the seed's own spelling.

How the thresholds were chosen: on the 1,300 kfashion-seed items, each RE value the seed's LLM
wrote was compared with candidate measurements and ratios (every measurement and every pairwise
ratio, per garment family, per fine category and per gender). For the best candidate, the cut
points between ordered tiers were fitted by exact dynamic programming to maximise agreement with
the LLM's values, and the grouping (pooled / per gender / per fine category) was kept only where it
raised 5-fold cross-validated agreement. Measured agreement (CV) is noted next to each table. The
LLM read some keys from absolute sizes rather than ratios (shoulder width, cuff, front length per
category and gender): the tables follow what the data shows, not what the key names suggest.
A tier is ``labels[i]`` where ``i`` counts the cut points below the value.
"""

from __future__ import annotations

from bisect import bisect_left

from schemas.attributes import FlatAttributes

GEO = "structural.geometry."
TOPS = {"coat", "jacket", "jumper", "cardigan", "blouse", "t-shirt", "sweater", "shirt", "vest"}

# --- tops (outerwear and tops: top.* measurements) -------------------------------------
# width_flow: hem / min(chest, waist); the LLM called a hem equal to the narrower of the two
# "Straight" (CV 0.89).
WIDTH_FLOW = ((0.9925, 1.0083), ("Tapered", "Straight", "Expanding"))
# waist_contour: waist / chest (CV 0.85).
WAIST_CONTOUR = ((0.905, 1.008), ("Hourglass", "Tubular", "Barrel"))
# shoulder_geometry: absolute shoulder width per fine category (CV 0.99; a chest ratio gets 0.64).
SHOULDER_LABELS = ("Narrow", "Standard", "Wide/Drop")
SHOULDER_CUTS = {
    "default": (39.5, 48.5),
    "blouse": (38.5, 52.0),
    "cardigan": (33.5, 49.5),
    "jumper": (38.5, 50.5),
    "vest": (38.5, 51.0),
}
# sleeve_profile: sleeve length 0 -> Sleeveless (68/68); else absolute cuff width per fine
# category (CV 0.96; cuff / chest gets 0.79).
CUFF_LABELS = ("Tapered", "Standard", "Wide/Bell")
CUFF_CUTS = {
    "default": (19.0, 27.0),
    "blouse": (15.0, 35.0),
    "cardigan": (15.0, 27.0),
    "coat": (15.0, 27.0),
    "jumper": (13.0, 36.0),
}
# vertical_balance (= length.feeling for tops): absolute front length per gender and fine
# category (CV 0.94; per gender only 0.65, length / chest 0.52). Men's and women's tops use
# different words. Tiers a category never showed borrow the gender's pooled cut.
LENGTH_LABELS = {
    "man": ("High Short", "Standard", "Semi-Short", "Long"),
    "woman": ("Micro Crop", "Semi-Crop", "Standard", "Tunic"),
}
LENGTH_CUTS = {
    ("man", "default"): (61.5, 70.5, 70.5),
    ("man", "blouse"): (61.5, 70.0, 70.0),
    ("man", "cardigan"): (61.5, 71.5, 71.5),
    ("man", "coat"): (61.5, 71.5, 78.5),
    ("man", "jacket"): (60.0, 71.0, 73.5),
    ("man", "jumper"): (61.5, 71.0, 71.0),
    ("man", "shirt"): (62.0, 71.0, 76.5),
    ("man", "sweater"): (63.5, 67.5, 67.5),
    ("man", "t-shirt"): (62.5, 70.5, 70.5),
    ("woman", "default"): (51.5, 73.5, 93.5),
    ("woman", "blouse"): (50.5, 56.5, 67.5),
    ("woman", "cardigan"): (39.5, 48.0, 63.5),
    ("woman", "coat"): (51.5, 76.5, 95.0),
    ("woman", "jacket"): (55.5, 72.5, 93.0),
    ("woman", "jumper"): (51.0, 56.0, 68.5),
    ("woman", "shirt"): (52.5, 73.5, 84.5),
    ("woman", "sweater"): (53.5, 72.5, 93.5),
    ("woman", "t-shirt"): (51.5, 73.0, 93.5),
    ("woman", "vest"): (49.5, 55.0, 68.5),
}
# fit.vibe: absolute chest per gender (in-sample 0.64-0.67; the fuzziest key).
FIT_LABELS = ("Bodycon", "Slim-fit", "Standard", "Relaxed", "Oversized")
FIT_CUTS = {"man": (81.0, 91.0, 105.0, 119.0), "woman": (71.0, 89.0, 99.0, 111.0)}
# silhouette.shape follows width_flow; the word differs per category (majority per cell).
TOP_SILHOUETTE = {"Expanding": "A-line / Trapeze", "Straight": "Boxy", "Tapered": "Tapered / Cocoon"}
TOP_SILHOUETTE_BY_FINE = {
    ("cardigan", "Expanding"): "A-line",
    ("cardigan", "Tapered"): "Tapered",
    ("blouse", "Tapered"): "Blouson",
    ("jumper", "Tapered"): "Blouson",
    ("coat", "Tapered"): "Cocoon",
    ("vest", "Tapered"): "Tubular",
}

# --- bottoms and one-pieces (pants.*, skirt.*, dress.*, jumpsuit.*) ---------------------
FLOW_LABELS = ("Tapered", "Straight", "A-line/Wide", "Flare")
# hip_to_hem_flow: hem / hip where a hem is measured (skirt 0.91, dress 0.89 in-sample); pants
# and jumpsuits carry no hem, and the LLM followed the hip size (pants CV 0.69, jumpsuit 0.78).
FLOW_HEM_HIP = {"skirt": (0.989, 1.011, 1.519), "dress": (0.947, 1.009, 1.61)}
FLOW_HIP = {"pants": (95.0, 103.0, 121.0), "jumpsuit": (94.0, 101.0, 119.0)}
# volumetric_fit: the hem for skirts/dresses (CV 0.90 / 0.79), the hip for pants/jumpsuits (0.70 / 0.74).
VOLUME_LABELS = ("Tight", "Regular", "Loose")
VOLUME_CUTS = {
    "skirt": ("skirt.hem_size", (87.0, 107.0)),
    "dress": ("dress.hem_size", (98.0, 115.0)),
    "pants": ("pants.hip_size", (89.0, 103.0)),
    "jumpsuit": ("jumpsuit.hip_size", (86.0, 101.0)),
}
# rise_profile: front rise length (pants CV 0.995, jumpsuit 0.98); skirts and dresses get the
# seed's fixed "None(Dress/Skirt)".
RISE_LABELS = ("Low Rise", "Mid-Rise", "High-Rise")
RISE_CUTS = {"pants": (22.5, 27.5), "jumpsuit": (20.5, 27.5)}
NO_RISE = "None(Dress/Skirt)"
# waist_type: one cut each (pants 0.92, skirt 0.96, dress 0.94, jumpsuit 0.84 CV); what the
# LLM read differs per category, hence the per-category measurement.
ELASTIC, STRUCTURED = "Elastic/Banded", "Structured"
# length.feeling: pants by inner seam (CV 0.81; pants_length is often 0 = not measured),
# skirts by length (0.94 in-sample), jumpsuits by front length (0.60). Dresses carry no length.
BOTTOM_LENGTH = {
    "pants": (
        "pants.inner_seam_length",
        (18.5, 42.5, 56.5, 59.5, 81.0),
        ("Shorts", "Bermuda", "Midi", "Cropped/Ankle", "Full Length", "Floor/Maxi"),
    ),
    "skirt": ("skirt.length", (33.0, 49.0, 65.5, 77.5), ("Shorts", "Mini", "Knee", "Midi", "Long/Maxi")),
    "jumpsuit": (
        "jumpsuit.front_length",
        (79.0, 80.5, 124.0, 134.0, 144.5),
        ("Shorts", "Bermuda", "Midi", "Long/Maxi", "Full Length", "Floor/Maxi"),
    ),
}
# silhouette.shape and fit.vibe of bottoms follow the flow and the volume almost one to one.
BOTTOM_SILHOUETTE = {
    "Tapered": "Tapered / Skinny",
    "Straight": "H-line / Straight",
    "A-line/Wide": "A-line / Wide",
    "Flare": "Flare / Full-Volume",
}
BOTTOM_FIT = {"Tight": "Skinny/Slim", "Regular": "Regular/Standard", "Loose": "Relaxed"}


def tier(value: float, cuts: tuple[float, ...], labels: tuple[str, ...]) -> str:
    return labels[bisect_left(cuts, value)]


def measurements(std: FlatAttributes) -> dict[str, float]:
    """The numeric STD keys (``top.chest_size`` -> 100.0); text and unparsable values are skipped."""
    out: dict[str, float] = {}
    for key, values in std.items():
        if "." not in key or not values:
            continue
        try:
            out[key] = float(values[0])
        except ValueError:
            continue
    return out


def _pos(m: dict[str, float], key: str) -> float | None:
    """A measurement that was taken: the seed writes 0 for 'not measured'."""
    value = m.get(key)
    return value if value is not None and value > 0 else None


def _ratio(m: dict[str, float], num: str, den: str) -> float | None:
    a, b = _pos(m, num), _pos(m, den)
    return a / b if a is not None and b is not None else None


def _top(m: dict[str, float], fine: str, gender: str) -> dict[str, str]:
    out: dict[str, str] = {}
    chest, waist, hem = _pos(m, "top.chest_size"), _pos(m, "top.waist_size"), _pos(m, "top.hem_size")
    if hem is not None and (chest or waist):
        narrow = min(v for v in (chest, waist) if v is not None)
        out[GEO + "width_flow"] = tier(hem / narrow, *WIDTH_FLOW)
        out["silhouette.shape"] = TOP_SILHOUETTE_BY_FINE.get(
            (fine, out[GEO + "width_flow"]), TOP_SILHOUETTE[out[GEO + "width_flow"]]
        )
    if (contour := _ratio(m, "top.waist_size", "top.chest_size")) is not None:
        out[GEO + "waist_contour"] = tier(contour, *WAIST_CONTOUR)
    if (shoulder := _pos(m, "top.shoulder_width")) is not None:
        cuts = SHOULDER_CUTS.get(fine, SHOULDER_CUTS["default"])
        out[GEO + "shoulder_geometry"] = tier(shoulder, cuts, SHOULDER_LABELS)
    if m.get("top.sleeve_length") == 0:
        out[GEO + "sleeve_profile"] = "Sleeveless"
    elif (cuff := _pos(m, "top.sleeve_cuff_size")) is not None:
        out[GEO + "sleeve_profile"] = tier(cuff, CUFF_CUTS.get(fine, CUFF_CUTS["default"]), CUFF_LABELS)
    sex = gender if gender in LENGTH_LABELS else "woman"  # 3/4 of the seed; its words are the common ones
    if (length := _pos(m, "top.front_length")) is not None:
        cuts = LENGTH_CUTS.get((sex, fine), LENGTH_CUTS[(sex, "default")])
        out[GEO + "vertical_balance"] = out["length.feeling"] = tier(length, cuts, LENGTH_LABELS[sex])
    if chest is not None:
        out["fit.vibe"] = tier(chest, FIT_CUTS[sex], FIT_LABELS)
    return out


def _flow(m: dict[str, float], fine: str) -> str | None:
    if fine in FLOW_HEM_HIP and (r := _ratio(m, f"{fine}.hem_size", f"{fine}.hip_size")) is not None:
        return tier(r, FLOW_HEM_HIP[fine], FLOW_LABELS)
    if fine in FLOW_HIP and (hip := _pos(m, f"{fine}.hip_size")) is not None:
        return tier(hip, FLOW_HIP[fine], FLOW_LABELS)
    return None


def _waist_type(m: dict[str, float], fine: str) -> str | None:
    if fine == "pants" and (v := _pos(m, "pants.pants_waist_size")) is not None:
        return ELASTIC if v > 43.0 else STRUCTURED
    if fine == "skirt" and (v := _pos(m, "skirt.waist_size")) is not None:
        return ELASTIC if v <= 63.0 else STRUCTURED
    if fine == "dress" and (v := _ratio(m, "dress.waist_size", "dress.chest_size")) is not None:
        return ELASTIC if v <= 0.729 else STRUCTURED
    if fine == "jumpsuit" and (v := _ratio(m, "jumpsuit.pants_waist_size", "jumpsuit.chest_size")) is not None:
        return STRUCTURED if v <= 0.543 else ELASTIC
    return None


def _bottom(m: dict[str, float], fine: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if fine in RISE_CUTS and (rise := _pos(m, f"{fine}.front_rise_length")) is not None:
        out[GEO + "rise_profile"] = tier(rise, RISE_CUTS[fine], RISE_LABELS)
    if (flow := _flow(m, fine)) is not None:
        out[GEO + "hip_to_hem_flow"] = flow
        out["silhouette.shape"] = BOTTOM_SILHOUETTE[flow]
    if (waist := _waist_type(m, fine)) is not None:
        out[GEO + "waist_type"] = waist
    if fine in VOLUME_CUTS and (size := _pos(m, VOLUME_CUTS[fine][0])) is not None:
        volume = tier(size, VOLUME_CUTS[fine][1], VOLUME_LABELS)
        out[GEO + "volumetric_fit"] = volume
        # A loose garment that flares is what the LLM called "Voluminous" (71 of 79).
        out["fit.vibe"] = "Voluminous" if volume == "Loose" and flow == "Flare" else BOTTOM_FIT[volume]
    if fine in BOTTOM_LENGTH and (length := _pos(m, BOTTOM_LENGTH[fine][0])) is not None:
        out["length.feeling"] = tier(length, *BOTTOM_LENGTH[fine][1:])
    return out


def geometry_re(std: FlatAttributes, fine: str) -> dict[str, str]:
    """RE values derivable from the garment's measurements (empty when it carries none).
    ``fine`` is the kfashion fine category (coat, pants, ...); gender comes from STD."""
    m = measurements(std)
    out: dict[str, str] = {}
    if fine in ("skirt", "dress"):  # a category fact, measurements or not
        out[GEO + "rise_profile"] = NO_RISE
    if not m:
        return out
    gender = (std.get("gender") or [""])[0].lower()
    if any(k.startswith("top.") for k in m):
        out.update(_top(m, fine, gender))
    elif fine in ("pants", "skirt", "dress", "jumpsuit"):
        out.update(_bottom(m, fine))
    return out
