"""Zero-shot RE values from free text: embed the product text (title + description) and every
known value of an RE key (the seed's vocabulary, shipped in ``re_vocabulary.json``) with MiniLM,
and take the closest value when its cosine clears a threshold. Used by the rules enricher only for
the keys its lexicons and the measurement rules left empty.

The text is embedded clause by clause ("jumper in soft cotton", "dropped shoulders", ...) and a
value scores its best clause: a whole description against "oversized fit" stays near 0.3-0.5
whatever it says, while the clause that names the fit stands out. A clause must also beat the
key's bare template ("fit", "sleeves") by a margin, else "long sleeves" matches "sleeveless
sleeves" and a lone "hem" matches "straight towards the hem".

MiniLM costs ~10-30 ms per text on a CPU core, so the value embeddings are made once per process
and clauses are embedded in one length-sorted batch per call (short padded batches are cheap).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources

import numpy as np
from pydantic import BaseModel

Embed = Callable[[Sequence[str]], np.ndarray]

# Chosen by measurement on H&M articles (../shared/data, not needed at run time), two ways:
# - word present: 3,000 texts, the 7,707 (text, key) pairs where a lexicon word names the value;
#   a pick agrees when it has the same fibre word or a value MiniLM puts >= 0.8 from the word's.
#   cos >= 0.70 alone: 82% agree (1,411 picks); with lift >= 0.15: 89% (801); cos >= 0.75 and
#   lift >= 0.15: 89% (571).
# - word masked, the case zero-shot is deployed for (the lexicon found nothing): 4,000 texts,
#   the lexicon's words cut out of the 10,243 (text, key) pairs that had one. Picks then agreed
#   15-28% at cos 0.60-0.65 and 32-50% at 0.70 (more wrong than right whatever the lift), and
#   3 of 3 at cos >= 0.75 with lift >= 0.15.
# 0.75 is the lowest cosine where picks did not do more harm than good; it fires rarely.
THRESHOLD = 0.75
MIN_LIFT = 0.15  # cosine over the key's bare template ("fit", "waistband") on the same clause
MAX_CLAUSES = 16  # bounds the cost of very long descriptions
_CLAUSE_SPLIT = re.compile(r"[\n.;:,()!?]+|\bwith\b|\band\b")
# How each key's value is phrased for the encoder: a bare "Expanding" or "Thick" means little.
TEMPLATES = {
    "season": "clothes for {}",
    "fit.vibe": "{} fit",
    "silhouette.shape": "{} silhouette",
    "length.feeling": "{} length",
    "fabric.feature": "{} fabric",
    "structural.geometry.width_flow": "{} towards the hem",
    "structural.geometry.waist_contour": "{} waist shape",
    "structural.geometry.vertical_balance": "{} length",
    "structural.geometry.shoulder_geometry": "{} shoulders",
    "structural.geometry.sleeve_profile": "{} sleeves",
    "structural.geometry.rise_profile": "{} waist",
    "structural.geometry.hip_to_hem_flow": "{} leg",
    "structural.geometry.waist_type": "{} waistband",
    "structural.geometry.volumetric_fit": "{} fit",
}
# Values that name a category fact, not something text describes.
NOT_FROM_TEXT = {"None(Dress/Skirt)"}


class Vocabulary(BaseModel):
    values: dict[str, list[str]]
    applies_to: dict[str, list[str]]  # structural keys -> the fine categories that carry them


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    text = resources.files("consumers.enrichment").joinpath("re_vocabulary.json").read_text(encoding="utf-8")
    return Vocabulary.model_validate(json.loads(text))


def readable(value: str) -> str:
    """``SyntheticFiber_Thick`` -> ``synthetic fiber thick``: the words MiniLM knows."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", value).replace("_", " ")
    return re.sub(r"\s+", " ", spaced).strip().lower()


def phrase(key: str, value: str) -> str:
    return TEMPLATES.get(key, "{}").format(readable(value))


def clauses(text: str) -> list[str]:
    """The short phrases of a product text, in order, without repeats."""
    parts = [p.strip() for p in _CLAUSE_SPLIT.split(text.lower())]
    unique = list(dict.fromkeys(p for p in parts if len(p) > 2))
    return unique[:MAX_CLAUSES] or [text.strip().lower()]


def default_embed(texts: Sequence[str]) -> np.ndarray:
    # Imported here: torch + transformers load only when zero-shot is actually used.
    from models.text_encoder import embed_texts

    return embed_texts(texts)


# One encoder call at a time: parallel callers would oversubscribe the CPU cores torch uses.
_LOCK = threading.Lock()
_VALUE_CACHE: dict[tuple[Embed, str], tuple[list[str], np.ndarray, np.ndarray]] = {}


def _embed_locked(embed: Embed, texts: Sequence[str]) -> np.ndarray:
    """Embeds in length order (batches pad to their longest text), rows back in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with _LOCK:
        vectors = np.asarray(embed([texts[i] for i in order]), dtype=np.float32)
    out = np.empty_like(vectors)
    out[order] = vectors
    return out


class ZeroShotMatcher:
    """Picks, per RE key, the vocabulary value closest to a text (cosine >= threshold)."""

    def __init__(self, threshold: float = THRESHOLD, min_lift: float = MIN_LIFT, embed: Embed | None = None) -> None:
        self.threshold = threshold
        self.min_lift = min_lift
        self.embed = embed or default_embed

    def keys_for(self, fine: str) -> list[str]:
        """The RE keys a garment of this fine category can carry (structural keys are
        per garment family; an unknown category gets the general keys only)."""
        vocab = vocabulary()
        return [k for k in vocab.values if k not in vocab.applies_to or fine in vocab.applies_to[k]]

    def values(self, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The key's known values, their unit vectors and the bare template's vector, embedded
        once per process."""
        cached = _VALUE_CACHE.get((self.embed, key))
        if cached is None:
            values = [v for v in vocabulary().values.get(key, []) if v not in NOT_FROM_TEXT]
            texts = [phrase(key, v) for v in values] + [TEMPLATES.get(key, "{}").format("").strip() or key]
            vectors = _embed_locked(self.embed, texts) if values else np.zeros((1, 1), dtype=np.float32)
            cached = _VALUE_CACHE[(self.embed, key)] = (values, vectors[:-1], vectors[-1])
        return cached

    def scores(self, clause_vectors: np.ndarray, key: str) -> list[tuple[str, float]]:
        """Every known value of ``key`` with its best cosine over the text's clauses that beat
        the bare template by ``min_lift`` (-1 where none does), best first."""
        values, vectors, template = self.values(key)
        if not values:
            return []
        clause_vectors = np.atleast_2d(clause_vectors)
        sims = clause_vectors @ vectors.T  # clauses x values
        lift = sims - (clause_vectors @ template)[:, None]
        best = np.where(lift >= self.min_lift, sims, -1.0).max(axis=0)
        order = np.argsort(-best, kind="stable")
        return [(values[i], float(best[i])) for i in order]

    def _pick(self, clause_vectors: np.ndarray, keys: Sequence[str]) -> dict[str, str]:
        out = {}
        for key in keys:
            ranked = self.scores(clause_vectors, key)
            if ranked and ranked[0][1] >= self.threshold:
                out[key] = ranked[0][0]
        return out

    def embed_texts(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the unit vectors of its clauses (one encoder call for all)."""
        pieces = [clauses(t) for t in texts]
        flat = [c for p in pieces for c in p]
        vectors = _embed_locked(self.embed, flat) if flat else np.zeros((0, 1), dtype=np.float32)
        bounds = np.cumsum([0, *(len(p) for p in pieces)])
        return [vectors[bounds[i] : bounds[i + 1]] for i in range(len(texts))]

    def match_many(self, texts: Sequence[str], keys: Sequence[Sequence[str]]) -> list[dict[str, str]]:
        """One batched encoder call for all texts that need any key."""
        need = [i for i, k in enumerate(keys) if k and texts[i].strip()]
        out: list[dict[str, str]] = [{} for _ in texts]
        if not need:
            return out
        for i, vectors in zip(need, self.embed_texts([texts[i] for i in need]), strict=True):
            out[i] = self._pick(vectors, keys[i])
        return out

    def match(self, text: str, keys: Sequence[str]) -> dict[str, str]:
        return self.match_many([text], [keys])[0]
