"""Word lists the rules enricher matches against title, description and STD values.

Each entry maps a phrase (lower case, matched on word boundaries) to the RE value the
seed's LLM would write for it. Order matters: the first phrase found wins, so the more
specific phrases come first.
"""

FIT_VIBE = [
    ("oversized", "Oversized"),
    ("oversize", "Oversized"),
    ("bodycon", "Bodycon"),
    ("skinny", "Skinny/Slim"),
    ("slim", "Slim-fit"),
    ("fitted", "Slim-fit"),
    ("voluminous", "Voluminous"),
    ("puff", "Voluminous"),
    ("relaxed", "Relaxed"),
    ("loose", "Relaxed"),
    ("boxy", "Relaxed"),
    ("regular", "Regular/Standard"),
    ("classic", "Standard"),
    ("tailored", "Standard"),
]
SILHOUETTE = [
    ("a-line", "A-line / Trapeze"),
    ("trapeze", "A-line / Trapeze"),
    ("wide-leg", "A-line / Wide"),
    ("wide leg", "A-line / Wide"),
    ("wide", "A-line / Wide"),
    ("boxy", "Boxy"),
    ("cocoon", "Tapered / Cocoon"),
    ("tapered", "Tapered / Skinny"),
    ("skinny", "Tapered / Skinny"),
    ("flare", "Flare / Full-Volume"),
    ("flared", "Flare / Full-Volume"),
    ("pleated", "Flare / Full-Volume"),
    ("bell", "Flare / Full-Volume"),
    ("straight", "H-line / Straight"),
    ("h-line", "H-line / Straight"),
    ("pencil", "H-line / Straight"),
    ("bodycon", "Bodycon / Fitted"),
    ("wrap", "Wrap / Hourglass"),
]
LENGTH = [
    ("micro", "Micro Crop"),
    ("cropped", "Semi-Crop"),
    ("crop", "Semi-Crop"),
    ("maxi", "Long/Maxi"),
    ("longline", "Long"),
    ("full-length", "Full Length"),
    ("full length", "Full Length"),
    ("ankle", "Cropped/Ankle"),  # the seed's spelling
    ("midi", "Midi"),
    ("mini", "Mini"),
    ("knee", "Knee"),
    ("shorts", "Shorts"),
    ("short", "Short"),
    ("tunic", "Tunic"),
    ("long", "Long"),
]
# Phrases whose "long"/"short" is about the sleeves, not the garment's length: cut out of the
# text before LENGTH is matched (H&M: "Top in jersey with long sleeves").
NOT_LENGTH = [
    "long-sleeved",
    "long sleeves",
    "long sleeve",
    "short-sleeved",
    "short sleeves",
    "short sleeve",
]
FIBRE = [
    ("cashmere", "Cashmere"),
    ("merino", "Wool"),
    ("wool", "Wool"),
    ("linen", "Linen"),
    ("silk", "Silk"),
    ("satin", "Satin"),
    ("denim", "Denim"),
    ("corduroy", "Corduroy"),
    ("leather", "Leather"),
    ("suede", "Suede"),
    ("fleece", "Fleece"),
    ("tweed", "Tweed"),
    ("velvet", "Velvet"),
    ("chiffon", "Chiffon"),
    ("jersey", "Jersey"),
    ("knit", "Knit"),
    ("cotton", "Cotton"),
    ("viscos rayon", "Viscos_rayon"),  # the kfashion STD spelling, kept by the seed's LLM
    ("viscose", "Viscose"),
    ("rayon", "Viscose"),
    ("nylon", "Nylon"),
    ("polyester", "Polyester"),
    ("down", "Down"),
    ("padded", "Padded"),
]
WEIGHT = [
    ("lightweight", "Lightweight"),
    ("airy", "Lightweight"),
    ("sheer", "Thin"),
    ("thin", "Thin"),
    ("chunky", "Thick"),
    ("heavyweight", "Heavy"),
    ("heavy", "Heavy"),
    ("thick", "Thick"),
    ("warm", "Thick"),
    ("padded", "Thick"),
]
# STD season -> the RE season the seed's LLM wrote most often for it (kfashion: summer items
# were "Early Summer" 219 times, "Summer" 115; fleece-lined winter items "Deep Winter" 59 of 64).
SEASON_FROM_STD = {"winter": "Winter", "summer": "Early Summer", "spring&fall": "Spring/Autumn"}
FLEECE_SEASON = {"winter": "Deep Winter", "spring&fall": "Chilly Spring/Autumn"}
SEASON = [
    ("winter", "Winter"),
    ("summer", "Summer"),
    ("spring", "Spring/Autumn"),
    ("autumn", "Spring/Autumn"),
    ("fall", "Spring/Autumn"),
]
# Description words that name a structural.geometry value (H&M: "dropped shoulders", "high
# waist"). Measurements, where a garment has them, win over these.
STRUCTURE = {
    "structural.geometry.rise_profile": [
        ("high-rise", "High-Rise"),
        ("high rise", "High-Rise"),
        ("high-waisted", "High-Rise"),
        ("high waist", "High-Rise"),
        ("mid-rise", "Mid-Rise"),
        ("regular waist", "Mid-Rise"),
        ("low-rise", "Low Rise"),
        ("low rise", "Low Rise"),
        ("low waist", "Low Rise"),
    ],
    "structural.geometry.waist_type": [
        ("elasticated", "Elastic/Banded"),
        ("elastic waist", "Elastic/Banded"),
        ("drawstring", "Elastic/Banded"),
        ("smocked waist", "Elastic/Banded"),
        ("zip fly", "Structured"),
        ("button fly", "Structured"),
        ("waistband with a button", "Structured"),
    ],
    "structural.geometry.shoulder_geometry": [
        ("dropped shoulders", "Wide/Drop"),
        ("dropped shoulder", "Wide/Drop"),
        ("drop shoulder", "Wide/Drop"),
        ("low shoulders", "Wide/Drop"),
    ],
    "structural.geometry.sleeve_profile": [
        ("sleeveless", "Sleeveless"),
        ("puff sleeves", "Wide/Bell"),
        ("balloon sleeves", "Wide/Bell"),
        ("wide sleeves", "Wide/Bell"),
        ("flared sleeves", "Wide/Bell"),
        ("bell sleeves", "Wide/Bell"),
        ("tapered sleeves", "Tapered"),
    ],
    "structural.geometry.hip_to_hem_flow": [
        ("skinny", "Tapered"),
        ("tapered", "Tapered"),
        ("slim legs", "Tapered"),
        ("straight legs", "Straight"),
        ("straight-cut", "Straight"),
        ("straight leg", "Straight"),
        ("wide legs", "A-line/Wide"),
        ("wide-leg", "A-line/Wide"),
        ("wide leg", "A-line/Wide"),
        ("a-line", "A-line/Wide"),
        ("flared", "Flare"),
        ("flare", "Flare"),
    ],
    "structural.geometry.volumetric_fit": [
        ("skinny", "Tight"),
        ("tight", "Tight"),
        ("bodycon", "Tight"),
        ("regular fit", "Regular"),
        ("relaxed fit", "Loose"),
        ("loose", "Loose"),
        ("wide-leg", "Loose"),
        ("wide leg", "Loose"),
        ("wide legs", "Loose"),
        ("voluminous", "Loose"),
    ],
}
# STD fibre -> the fibre word of the seed's fabric.feature ("SyntheticFiber_Thick").
FIBRE_FROM_STD = {
    "synthetic fiber others": "SyntheticFiber",
    "protein fiber others": "ProteinFiber",
    "cellulose fiber others": "CelluloseFiber",
    "regenerated fiber others": "RegeneratedFiber",
    "viscos rayon": "Viscos_rayon",
}
# STD -> the weight word of fabric.feature when the text names none; fleece wins, then
# transparency, then season (kfashion: 74% agreement on "<Fibre>_<Weight>" values, against 44%
# for always "Normal").
WEIGHT_FROM_TRANSPARENCY = {"contain": "Sheer", "contain a lot": "Sheer", "contain little": "Thin"}
WEIGHT_FROM_SEASON = {"winter": "Thick", "summer": "Lightweight"}
# STD -> RE fallbacks when the text says nothing.
SILHOUETTE_FROM_STD = {
    "pants_silhouette=wide": "A-line / Wide",
    "pants_silhouette=loose": "A-line / Wide",
    "pants_silhouette=skinny": "Tapered / Skinny",
    "pants_silhouette=bell-bottom": "Flare / Full-Volume",
    "pants_silhouette=normal": "H-line / Straight",
    "skirt_design=a-line and bell line": "A-line / Trapeze",
    "skirt_design=h-line": "H-line / Straight",
    "skirt_design=mermaid line": "Mermaid / Fitted",
}
LENGTH_FROM_STD = {
    "top_length_type=crop": "Semi-Crop",
    "top_length_type=short": "Short",
    "top_length_type=normal": "Standard",
    "top_length_type=midi": "Midi",
    "top_length_type=long": "Long",
}
# Free text -> STD, used to turn a request's context text into a pseudo item.
FINE_CATEGORY = [
    ("jumpsuit", "jumpsuit"),
    ("overall", "jumpsuit"),
    ("cardigan", "cardigan"),
    ("blazer", "jacket"),
    ("jacket", "jacket"),
    ("parka", "jumper"),
    ("puffer", "jumper"),
    ("padding", "jumper"),
    ("anorak", "jumper"),
    ("coat", "coat"),
    ("trench", "coat"),
    ("blouse", "blouse"),
    ("t-shirt", "t-shirt"),
    ("tee", "t-shirt"),
    ("sweater", "sweater"),
    ("jumper", "sweater"),
    ("hoodie", "sweater"),
    ("knit", "sweater"),
    ("shirt", "shirt"),
    ("vest", "vest"),
    ("gilet", "vest"),
    ("dress", "dress"),
    ("skirt", "skirt"),
    ("jeans", "pants"),
    ("trousers", "pants"),
    ("pants", "pants"),
    ("shorts", "pants"),
    ("chinos", "pants"),
    ("leggings", "pants"),
]
CATEGORY_CODE = {
    "coat": "01outer_01coat",
    "jacket": "01outer_02jacket",
    "jumper": "01outer_03jumper",
    "cardigan": "01outer_04cardigan",
    "blouse": "02top_01blouse",
    "t-shirt": "02top_02t-shirt",
    "sweater": "02top_03sweater",
    "shirt": "02top_04shirt",
    "vest": "02top_05vest",
    "dress": "03-1onepiece(dress)",
    "jumpsuit": "03-2onepiece(jumpsuite)",
    "pants": "04bottom_01pants",
    "skirt": "04bottom_02skirt",
}
COLOURS = [
    "black",
    "white",
    "gray",
    "grey",
    "beige",
    "brown",
    "blue",
    "navy",
    "green",
    "khaki",
    "red",
    "pink",
    "purple",
    "yellow",
    "orange",
    "ivory",
    "camel",
    "burgundy",
    "mint",
    "lavender",
    "wine",
    "silver",
    "gold",
]
COLOUR_TO_STD = {"grey": "Gray", "navy": "Navy", "camel": "Camel"}
GENDER = [("women", "woman"), ("woman", "woman"), ("ladies", "woman"), ("men", "man"), ("man", "man")]
